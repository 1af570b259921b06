"""Thin command-line entry points, one per recipe stage.

Every entry point is ``python -m asr_recipes.bin.<stage> key=value ...`` and is
configured by Hydra from the primary config ``conf/<stage>.yaml``, which lists
``common/hydra`` first in its defaults (no chdir, no outputs/ folders). Pass
``--cfg job`` to print the resolved config. Entry points only parse the config and
call the library; they hold no logic a test would want to reach.
"""

#: Hydra ``config_path`` for modules in this package (the repository's conf/).
CONFIG_PATH = "../../conf"


def positional_checkpoint(argv: list[str]) -> list[str]:
    """``prog CKPT key=value ...`` -> ``prog checkpoint='CKPT' key=value ...`` for Hydra, which
    takes only overrides: a first argument without '=' (and not an option) is the checkpoint.
    Quoted, so paths with '=', spaces or brackets survive Hydra's override grammar."""
    if len(argv) > 1 and "=" not in argv[1] and not argv[1].startswith("-"):
        return [argv[0], "checkpoint='" + argv[1].replace("'", "\\'") + "'", *argv[2:]]
    return list(argv)


def comma_lists(argv: list[str], keys) -> list[str]:
    """``key=2,2,3`` -> ``key=[2,2,3]`` for the given keys: icefall writes per-stack flags as
    comma lists, which Hydra would take for a sweep."""
    out = list(argv[:1])
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if sep and key in keys and "," in value and not value.startswith("["):
            arg = f"{key}=[{value}]"
        out.append(arg)
    return out

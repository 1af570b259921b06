"""The README and the results files say what the code does: the quick start's commands are
Makefile targets (and CI runs one of them), every `python -m asr_recipes...` command shown names
a module that exists and only keys (or flags) its entry point has, every relative link resolves
(anchors included), and the README's code example runs as written."""

import functools
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
#: The documents whose links must resolve.
DOCUMENTS = sorted({REPO / "README.md", *REPO.glob("egs/*/README.md"), *REPO.glob("egs/*/RESULTS.md"),
                    *REPO.glob("egs/*/studies/*.md")})


@functools.lru_cache(maxsize=None)
def help_text(module: str) -> str:
    """``python -m MODULE --help`` (argparse entry points), once per module."""
    shown = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


def make_dry_run(target: str) -> str:
    """The commands `make TARGET` would run (make -n; the install step assumed done)."""
    done = subprocess.run(["make", "-n", "-o", "install", "-o", ".venv/.installed-stamp", target], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quick_start_commands_are_makefile_targets_and_ci_runs_make_test():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    mentioned = set(re.findall(r"`make ([a-z][a-z-]*)", README)) | {c.split()[1] for c in commands}
    assert mentioned <= makefile_targets(), mentioned - makefile_targets()
    assert "test-fast" in mentioned
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)
    # `make test` is the whole suite; `make test-fast` the same without the slow tests
    full = [line for line in make_dry_run("test").splitlines() if "pytest" in line]
    fast = [line for line in make_dry_run("test-fast").splitlines() if "pytest" in line]
    assert len(full) == 1 and " -m " not in full[0].split("-m pytest", 1)[1]
    assert fast == [full[0].replace("-m pytest", '-m pytest -m "not slow"')]
    assert "bash egs/mini/run.sh" in make_dry_run("demo") and "egs/mini/exp/RESULTS.md" in make_dry_run("demo")


def readme_commands() -> list[list[str]]:
    """Every command of the README that runs a module of the project (`python -m asr_recipes...`,
    torchrun included), as shell words from the module name on: from the code blocks (continued
    lines joined) and from inline code."""
    texts = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", README, re.S):
        if language in ("bash", "sh", ""):
            texts += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    texts += [span for span in prose.split("`")[1::2] if "-m asr_recipes." in span]  # inline code
    commands = []
    for text in texts:
        for m in re.finditer(r"-m (asr_recipes(?:\.\w+)+)\b(.*)", text):
            # placeholders such as <test cuts> stand for one word
            words = shlex.split(re.sub(r"<[^<>]*>", "PLACEHOLDER", m.group(2)), comments=True)
            for stop in ("&&", "|", ";"):
                words = words[:words.index(stop)] if stop in words else words
            commands.append([m.group(1), *words])
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_the_stages_entry_points():
    shown = {c[0] for c in COMMANDS}
    assert {f"asr_recipes.bin.{x}" for x in ("train", "average", "decode", "transcribe", "export")} <= shown


def _hydra_config(entry_point: str, groups: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=entry_point, overrides=groups)


def _has_key(cfg, dotted: str) -> bool:
    parent, _, last = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return OmegaConf.is_dict(node) and last in node.keys()


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_names_a_module_and_keys_it_has(command):
    module, *args = command
    assert importlib.util.find_spec(module) is not None, module
    entry_point = module.rsplit(".", 1)[1]
    source = Path(importlib.util.find_spec(module).origin).read_text()
    if "hydra.main" not in source:
        if module.startswith("asr_recipes.bin."):  # argparse: every flag shown is one it has
            flags = {a.split("=")[0] for a in args if a.startswith("--")}
            if flags:
                shown = help_text(module)
                assert all(re.search(rf"{re.escape(f)}\b", shown) for f in flags), (flags, shown)
        return
    positional = [a for a in args if "=" not in a and not a.startswith("-") and a not in ("...", "job")]
    if positional:  # `prog CKPT key=value`: the checkpoint (asr_recipes.bin.positional_checkpoint)
        assert "positional_checkpoint" in source and len(positional) == 1, (module, positional)
    pairs = [a.split("=", 1) for a in args if "=" in a and not a.startswith("-")]
    groups = [f"{k}={v}" for k, v in pairs if (REPO / "conf" / k).is_dir()]
    cfg = _hydra_config(entry_point, groups)  # a group choice that does not exist fails here
    for key, _ in pairs:
        if (REPO / "conf" / key).is_dir():
            continue
        assert _has_key(cfg, key), f"{module}: conf/{entry_point}.yaml has no key {key!r}"


def test_transcribe_flags_in_the_readme_table_exist():
    """The options table names transcribe's flags outside any command line."""
    table = README.split("| | `decode` (Hydra keys) | `transcribe` (flags) |", 1)[1].split("\n\n", 1)[0]
    flags = set(re.findall(r"`(--[a-z-]+)", table))
    assert flags
    shown = help_text("asr_recipes.bin.transcribe")
    assert {f for f in flags if not re.search(rf"{re.escape(f)}\b", shown)} == set()
    keys = {k for k in re.findall(r"`([a-z_]+)=", table)}
    cfg = _hydra_config("decode", [])
    assert keys and all(_has_key(cfg, k) for k in keys), keys


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, blanks -> '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.*)$", text, re.MULTILINE)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(p.relative_to(REPO)) for p in DOCUMENTS])
def test_relative_links_resolve(document):
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = []
    for link in links:
        if re.match(r"^[a-z]+:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists() or REPO not in target.parents and target != REPO:
            broken.append(link)
        elif anchor and (target.suffix != ".md" or anchor not in anchors(target)):
            broken.append(link)
    assert broken == [], f"{document.relative_to(REPO)}: {broken}"


def test_the_studies_are_each_linked_from_the_results_file():
    for results in REPO.glob("egs/*/RESULTS.md"):
        studies = {p.name for p in (results.parent / "studies").glob("*.md")}
        linked = set(re.findall(r"\]\(studies/([\w.-]+\.md)\)", results.read_text()))
        assert studies <= linked, studies - linked


def test_readme_rnnt_example_runs_and_backpropagates():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    example = next(b for b in blocks if "rnnt_loss_pruned" in b)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert torch.isfinite(scope["pruned_loss"]) and torch.isfinite(scope["simple_loss"])
    assert scope["encoder_out"].grad is not None and torch.isfinite(scope["encoder_out"].grad).all()
    assert scope["ranges"].shape == (2, 50, 5)

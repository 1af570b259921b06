"""The library's layers: every import between packages of asr_recipes goes down (or sideways
where the table allows it), never up. Read from the source with ``ast`` (function-level imports
included), checked against the table below; README "Layout" describes the same layers."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LIBRARY = ROOT / "asr_recipes"

#: modules of the package root that form the lowest layer
BASE_MODULES = {"constants", "atomic_files", "machine", "chunk_windows"}

#: layer -> the layers it may import (itself always allowed), lowest first
ALLOWED = {
    # units and constants, atomic file writes, machine facts, the chunk-window arithmetic
    "base": set(),
    # the pruned RNN-T loss library (k2's API): stands alone
    "rnnt": {"base"},
    # WER/CER and results files
    "scoring": {"base"},
    # front ends, encoders, decoder, joiner, Transducer, the lattice config
    "models": {"rnnt", "base"},
    # token-level language models for fusion
    "lm": {"models", "base"},
    # tokenizers, features, manifests, datamodule, corpus registry
    "data": {"base"},
    # the checkpoint format, safe loading, averaging, model_from_checkpoint
    "checkpoint": {"models", "lm", "data", "base"},
    # measurements of a trained model (prune coverage): below training, which logs them
    "diagnostics": {"models", "rnnt", "checkpoint", "data", "base"},
    # the training loop, objective, optimizers and schedules
    "training": {"diagnostics", "checkpoint", "data", "models", "lm", "rnnt", "scoring", "base"},
    # searches, streaming, transcription, decoding test sets
    "decoding": {"checkpoint", "data", "models", "lm", "rnnt", "scoring", "base"},
    # ONNX for sherpa-onnx and its checks
    "export": {"decoding", "checkpoint", "data", "models", "lm", "scoring", "base"},
    # scaffolding: speech synthesis (synth), benchmarks and the GPU check (tools)
    "tools": {"training", "decoding", "export", "diagnostics", "checkpoint", "data", "lm", "models", "rnnt",
              "scoring", "base"},
    # thin entry points
    "bin": {"tools", "training", "decoding", "export", "diagnostics", "checkpoint", "data", "lm", "models", "rnnt",
            "scoring", "base"},
}
#: top-level packages that are not layers of their own
PACKAGE_LAYER = {"synth": "tools"}


def layer_of(module: str) -> str:
    """asr_recipes.<package>.<...> -> its layer (KeyError for a package without one)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return "base"
    name = PACKAGE_LAYER.get(parts[1], parts[1])
    if name not in ALLOWED:
        raise KeyError(f"{module}: package {parts[1]!r} has no layer; add it to tests/test_layers.py (and README)")
    return name


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, imported asr_recipes module) of every import in the file, relative ones resolved;
    ``from asr_recipes.x import y`` counts as asr_recipes.x.y (y may be a module)."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{a.name}" if base == "asr_recipes" else base) for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "asr_recipes"]


def violations(edges) -> list[str]:
    """Edges (importing module, line, imported module) that break the table."""
    bad = []
    for src, line, dst in edges:
        a, b = layer_of(src), layer_of(dst)
        if a != b and b not in ALLOWED[a]:
            bad.append(f"{src}:{line} imports {dst}: layer {a} may import only {sorted(ALLOWED[a]) or 'nothing'}")
    return bad


def library_edges():
    return [(module_name(p), line, dst) for p in sorted(LIBRARY.rglob("*.py")) for line, dst in imports(p)]


def test_the_table_is_a_hierarchy():
    """No two layers may import each other (directly or through others): the table has an order."""
    order, left = [], dict(ALLOWED)
    while left:
        ready = [name for name, deps in left.items() if deps <= set(order)]
        assert ready, f"cycle among {sorted(left)}"
        order += ready
        for name in ready:
            del left[name]


def test_every_package_has_a_layer():
    for path in LIBRARY.rglob("*.py"):
        layer_of(module_name(path))


def test_no_import_goes_up():
    edges = library_edges()
    assert len(edges) > 100  # the walk sees the library's imports
    assert violations(edges) == []


@pytest.mark.parametrize("src,dst", [
    ("asr_recipes.models.transducer", "asr_recipes.training.objective"),
    ("asr_recipes.data.filters", "asr_recipes.models.build"),
    ("asr_recipes.checkpoint.io", "asr_recipes.decoding.search"),
    ("asr_recipes.diagnostics.prune_report", "asr_recipes.training.objective"),
    ("asr_recipes.constants", "asr_recipes.rnnt"),
    ("asr_recipes.decoding.runner", "asr_recipes.synth.corpus"),
])
def test_a_backward_edge_is_detected(src, dst):
    assert len(violations([(src, 1, dst)])) == 1


def test_relative_and_package_imports_are_resolved(tmp_path):
    pkg = tmp_path / "asr_recipes" / "models"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("from . import y\nfrom .z import w\nfrom asr_recipes import training\n"
                              "def f():\n    from asr_recipes.decoding.search import make_search\n")
    edges = [("asr_recipes.models.x", line, dst) for line, dst in imports(pkg / "x.py", tmp_path)]
    assert [e[2] for e in edges] == ["asr_recipes.models", "asr_recipes.models.z", "asr_recipes.training",
                                     "asr_recipes.decoding.search"]
    assert len(violations(edges)) == 2  # training and decoding are above models


def test_tests_take_only_entry_points_from_bin():
    """Logic that tests need lives in the library; from bin/<stage>.py tests call main only."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asr_recipes.bin."):
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                        for a in node.names if a.name != "main"]
    assert bad == []

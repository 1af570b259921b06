"""Every torch.load in the library says weights_only=True; the upgrade tool's is the one
weights_only=False (it converts a file its user trusts). Nothing else unpickles."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).parents[2] / "asr_recipes"
UNSAFE_ALLOWED = "checkpoint/upgrade.py"


def loads(source: str) -> list[tuple[int, object]]:
    """(line, weights_only value or "missing"/"not a constant") of every torch.load call, and
    (line, "pickle") for every pickle.load / pickle.loads call."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else None
        if name == "torch" and node.func.attr == "load":
            kw = {k.arg: k.value for k in node.keywords}
            value = kw.get("weights_only")
            found.append((node.lineno, "missing" if value is None else
                          value.value if isinstance(value, ast.Constant) else "not a constant"))
        elif name == "pickle" and node.func.attr in ("load", "loads"):
            found.append((node.lineno, "pickle"))
    return found


def test_the_detector_sees_unsafe_and_implicit_loads():
    src = ("import torch, pickle\ntorch.load(p, weights_only=False)\ntorch.load(p)\n"
           "torch.load(p, weights_only=flag)\npickle.loads(b)\ntorch.load(p, map_location='cpu', weights_only=True)\n")
    assert loads(src) == [(2, False), (3, "missing"), (4, "not a constant"), (5, "pickle"), (6, True)]


def test_every_load_in_the_library_is_weights_only():
    unsafe, checked = {}, 0
    for path in sorted(LIBRARY.rglob("*.py")):
        rel = path.relative_to(LIBRARY).as_posix()
        for line, value in loads(path.read_text()):
            checked += 1
            if value is not True:
                unsafe.setdefault(rel, []).append((line, value))
    assert checked >= 2  # load_checkpoint's and the upgrade tool's at least
    assert list(unsafe) == [UNSAFE_ALLOWED] and [v for _, v in unsafe[UNSAFE_ALLOWED]] == [False], unsafe

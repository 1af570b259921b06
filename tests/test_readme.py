"""The README's code example runs as written, and the README keeps the two set-up commands."""

import re
from pathlib import Path

import torch

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README


def test_readme_rnnt_example_runs_and_backpropagates():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    example = next(b for b in blocks if "rnnt_loss_pruned" in b)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert torch.isfinite(scope["pruned_loss"]) and torch.isfinite(scope["simple_loss"])
    assert scope["encoder_out"].grad is not None and torch.isfinite(scope["encoder_out"].grad).all()
    assert scope["ranges"].shape == (2, 50, 5)

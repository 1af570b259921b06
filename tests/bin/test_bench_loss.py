"""The loss benchmark runs its correctness checks and prints its table (tiny shapes)."""

import subprocess
import sys
from pathlib import Path


def test_bench_loss_prints_checks_and_table():
    out = subprocess.run(
        [sys.executable, "-m", "asr_recipes.bin.bench_loss", "device=cpu", "iters=1", "warmup=0",
         "shapes=[{B:2,T:20,S:5,C:30,J:16},{B:2,T:20,S:5,C:30,J:16,variable:true}]", "recursion={B:2,T:30,S:8}"],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("date ") and "torch" in lines[0]
    assert sum(line.startswith("check:") for line in lines) == 2
    rows = [line for line in lines if line.startswith("| B=2")]
    assert len(rows) == 2 and rows[1].startswith("| B=2,T=20,S=5,C=30,var |")
    assert any(line.startswith("recursion alone") for line in lines)

"""bin.bench_optim: one row per optimizer variant, AdamW the reference of the ratios."""

import re

import pytest

from tests.decoding.entry import run_entry


def test_rows_and_ratios(capsys):
    run_entry("asr_recipes.bin.bench_optim", "model=tiny", "vocab_size=20", "device=cpu", "threads=1", "warmup=1",
              "rounds=3", "variants=[adamw,scaled_adam,scaled_adam_unbatched]")
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["adamw", "scaled_adam", "scaled_adam_unbatched"], out
    assert rows[0][2] == "1.00" and all(float(ms) > 0 for _, ms, _ in rows)
    for _, ms, ratio in rows[1:]:  # printed with 2 decimals: ~1% rounding
        assert float(ratio) == pytest.approx(float(ms) / float(rows[0][1]), rel=0.02, abs=0.01)

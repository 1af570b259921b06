"""Part 2: the loss benchmark (python -m asr_recipes.bin.bench_loss), read back and held to targets.

bench_loss prints its correctness checks, one markdown row per (shape, precision) and the
recursion timings; this module parses those lines and compares them with the targets the
kernel work set (README, "Benchmarks"): at B=32,T=500,S=100,C=500 our pruned step at least
15x faster and 10x smaller in peak memory than torchaudio in fp32; at C=5000 15x / 15x; with
fp16 autocast on both sides at least 10x faster; the recursion alone (fwd + bwd) <= 0.7 ms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from asr_recipes.tools.gpu_check.report import fenced, fmt, shown, table
from asr_recipes.tools.gpu_check.timebox import Finished

_RECURSION = re.compile(r"^recursion alone .*?(?:warps (\w+))?: ([\d.,]+) ms$")


@dataclass(frozen=True)
class BenchRow:
    """One printed row: times in ms per step, peak memory in MB, and the ratios full / pruned as
    bench_loss computed them from unrounded values ("-" in the output = None)."""

    shape: str  # e.g. "B=32,T=500,S=100,C=500" or "...,var"
    precision: str  # "fp32" | "fp16 autocast"
    full_ms: Optional[float]
    pruned_ms: float
    speedup: Optional[float]
    full_mb: Optional[float]
    pruned_mb: Optional[float]
    memory_ratio: Optional[float]


@dataclass
class BenchOutput:
    header: Optional[str] = None
    checks: list = field(default_factory=list)  # "check: ..." lines
    rows: list = field(default_factory=list)  # BenchRow
    recursion: dict = field(default_factory=dict)  # warps ("default", "1", ...) -> ms


def _number(cell: str) -> Optional[float]:
    cell = cell.strip()
    return None if cell in ("-", "") else float(cell.rstrip("x").replace(",", ""))


def parse_bench(output: str) -> BenchOutput:
    """The lines bench_loss prints (see asr_recipes/tools/bench/loss.py: bench_shapes, bench_recursion)."""
    out = BenchOutput()
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("date ") and "| device " in line:
            out.header = line
        elif line.startswith("check:"):
            out.checks.append(line)
        elif line.startswith("| B="):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out.rows.append(BenchRow(cells[0], cells[1], *map(_number, cells[2:8])))
        else:
            m = _RECURSION.match(line)
            if m:
                out.recursion[m.group(1) or "default"] = float(m.group(2).replace(",", ""))
    return out


@dataclass(frozen=True)
class Target:
    shape: str
    precision: str
    min_speedup: float
    min_memory_ratio: Optional[float] = None


TARGETS = (
    Target("B=32,T=500,S=100,C=500", "fp32", 15, 10),
    Target("B=32,T=150,S=30,C=5000", "fp32", 15, 15),
    Target("B=32,T=500,S=100,C=500", "fp16 autocast", 10),
    Target("B=32,T=150,S=30,C=5000", "fp16 autocast", 10),
)
RECURSION_TARGET_MS = 0.7


def _verdict(measured: Optional[float], target: float, higher_is_better: bool = True) -> str:
    if measured is None:
        return "not measured"
    met = measured >= target if higher_is_better else measured <= target
    if met:
        return "met"
    factor = target / measured if higher_is_better else measured / target
    return f"**missed** by {factor:.2f}x"


def target_rows(bench: BenchOutput, targets: Sequence[Target] = TARGETS) -> list[list[str]]:
    """[target, measured, verdict] per target; a shape that was not run is "not measured"."""
    rows = []
    by_key = {(r.shape, r.precision): r for r in bench.rows}
    for t in targets:
        row = by_key.get((t.shape, t.precision))
        speed = row.speedup if row else None
        rows.append([f"{t.shape} {t.precision}: speed-up >= {t.min_speedup:g}x", fmt(speed, 1, "x"),
                     _verdict(speed, t.min_speedup)])
        if t.min_memory_ratio is not None:
            mem = row.memory_ratio if row else None
            rows.append([f"{t.shape} {t.precision}: memory ratio >= {t.min_memory_ratio:g}x", fmt(mem, 1, "x"),
                         _verdict(mem, t.min_memory_ratio)])
    default = bench.recursion.get("default")
    best = min(bench.recursion.values()) if bench.recursion else None
    rows.append([f"recursion alone (default warps) <= {RECURSION_TARGET_MS} ms", fmt(default, 3, " ms"),
                 _verdict(default, RECURSION_TARGET_MS, higher_is_better=False)])
    if best is not None and best != default:
        rows.append([f"recursion alone (best warps) <= {RECURSION_TARGET_MS} ms", fmt(best, 3, " ms"),
                     _verdict(best, RECURSION_TARGET_MS, higher_is_better=False)])
    return rows


def bench_section(heading: str, finished: Finished, bench: BenchOutput, with_targets: bool) -> list[str]:
    lines = [heading, "", f"{finished.status()}, {finished.seconds:.0f} s. `{shown(finished.command)}`", ""]
    printed = [line for line in finished.output.splitlines()
               if line.startswith(("date ", "check:", "|", "recursion alone"))]
    lines += fenced("\n".join(printed), 60) if printed else ["(nothing printed)"]
    if with_targets:
        lines += ["", "Targets (fixed lengths; speed-up = torchaudio full ms / ours pruned ms, memory ratio = "
                      "peak MB full / pruned):", ""]
        lines += table(["target", "measured", "verdict"], target_rows(bench), "lrl")
    if not finished.ok:
        lines += ["", "Last lines of the output:", "", *fenced(finished.output, 25)]
    return lines

"""Results tables: an experiment's decoding results as a dated markdown section.

Reads every ``<exp_dir>/<method>/speed-<part>-<key>.json`` written by the decode stage
(it names part, method and key unambiguously, and carries speed, model size, training
time and machine) and the matching ``errs-`` file (rate and counts), then writes

    ## <title> (YYYY-MM-DD HH:MM)

    - exp_dir, weights (parameters, training time, epoch/step), decoding machine(s)

    | test set | method | key | metric | rate (%) | errors / ref | RTF | utt/s |

to the run's own results file (by default <exp_dir>/RESULTS.md; written atomically, replacing
what an earlier run of the stage wrote). The curated egs/<recipe>/RESULTS.md is edited by hand.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from asr_recipes.atomic_files import write_atomic
from asr_recipes.decoding.runner import SPEED_PREFIX
from asr_recipes.scoring import read_errs_header, scoring_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultRow:
    part: str
    method: str
    key: str
    metric: str  # "WER" | "CER"
    error_rate: float  # percent, from the wer-summary file
    errors: int
    ref_len: int
    rtf: float
    utterances_per_second: float
    record: dict  # the whole speed json


def collect_results(exp_dir: str | os.PathLike) -> list[ResultRow]:
    """One row per decoded (part, method, key) in exp_dir, sorted by part, method, key (numbers by value).
    A speed file without its errs file is skipped with a warning."""
    rows = []
    for path in sorted(Path(exp_dir).glob(f"*/{SPEED_PREFIX}*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        part, method, key = record["part"], record["method"], record["key"]
        errs_path = scoring_paths(path.parent, part, key)["errs"]
        if not errs_path.is_file():
            log.warning("%s has no errs file beside it; not in the table", path)
            continue
        errs = read_errs_header(errs_path)  # the same totals as the wer-summary file, plus counts
        rows.append(ResultRow(part, method, key, "CER" if record.get("unit") == "char" else "WER", errs.error_rate,
                              errs.errors, errs.ref_len, record["rtf"], record["utterances_per_second"], record))
    return sorted(rows, key=lambda r: (r.part, r.method, natural_sort_key(r.key)))


def natural_sort_key(text: str) -> tuple:
    """Digits compare as numbers, so "minutes-5" sorts before "minutes-10" and "epoch-9" before "epoch-12"."""
    return tuple(int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", text))


def _hours(seconds) -> str:
    return "unknown" if seconds is None else f"{seconds / 3600:.2f} h"


def _machine(m: dict) -> str:
    return (f"{m.get('device_name', '?')} ({m.get('device', '?')}), {m.get('cpu_count', '?')} CPUs, "
            f"{m.get('platform', '?')}, torch {m.get('torch', '?')}")


def format_section(exp_dir: str | os.PathLike, rows: list[ResultRow], title: str | None = None,
                   now: datetime.datetime | None = None) -> str:
    """The markdown section for ``rows`` (see the module docstring)."""
    now = now or datetime.datetime.now()
    title = title or Path(exp_dir).resolve().name
    lines = [f"## {title} ({now:%Y-%m-%d %H:%M})", "", f"- exp_dir: `{exp_dir}`"]  # as the caller names it
    weights = {}  # weights name -> first record decoded with them
    for r in rows:
        weights.setdefault(r.record.get("weights", "?"), r.record)
    machines = dict.fromkeys(_machine(r.record.get("machine", {})) for r in rows)  # distinct, in order
    for name, record in weights.items():
        model = record.get("model", {})
        params = model.get("num_parameters")
        size = f"{params / 1e6:.2f} M parameters" if params else "size unknown"
        lines.append(f"- weights `{name}` ({record.get('checkpoint', '?')}): {size}, trained "
                     f"{_hours(model.get('train_seconds'))} (epoch {model.get('epoch')}, step {model.get('step')})")
    for machine in machines:
        lines.append(f"- decoded on {machine}")
    lines += ["", "| test set | method | key | metric | rate (%) | errors / ref | RTF | utt/s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.part} | {r.method} | {r.key} | {r.metric} | {r.error_rate:.2f} | "
                     f"{r.errors} / {r.ref_len} | {r.rtf:.4f} | {r.utterances_per_second:.1f} |")
    return "\n".join(lines) + "\n"


def write_results(exp_dir: str | os.PathLike, results_md: str | os.PathLike, title: str | None = None,
                  now: datetime.datetime | None = None) -> str:
    """Write the section for exp_dir's results to results_md (atomically, replacing the file);
    returns it. Nothing is written when exp_dir holds no decoding results."""
    rows = collect_results(exp_dir)
    if not rows:
        raise FileNotFoundError(f"no decoding results (*/{SPEED_PREFIX}*.json) in {exp_dir}: run the decode "
                                "stage first (python -m asr_recipes.bin.decode exp_dir=...)")
    results_md = Path(results_md)
    # relative to the results file, so the file names no machine's paths
    where = os.path.relpath(Path(exp_dir).absolute(), results_md.absolute().parent)
    if where == ".":
        where = f"{Path(exp_dir).absolute().name} (this file's directory)"
    section = format_section(where, rows, title or Path(exp_dir).absolute().name, now)
    write_atomic(results_md, section)
    return section

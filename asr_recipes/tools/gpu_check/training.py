"""Parts 3 and 5: real training, ``torchrun --nproc_per_node 1 -m asr_recipes.bin.train``, read back from its log.

Two runs of the same experiment on the same data with the same seeds, so the same batches in
the same order: ``loss=pruned`` (ours) and ``loss=full`` (torchaudio's rnnt_loss on the full
joiner). ``process_group=always`` makes the one-process job initialise NCCL (gloo on a CPU)
and wrap the model in DDP, as an N-GPU job does. The trainer's log lines carry what the
report needs (asr_recipes/training/monitor.py writes them):

    step 40: loss 1.2345, simple 2.34, pruned 3.45, lr 1.50e-03, grad norm 3.21, 80.1 utt/s,
        1002.3 s of audio/s, 299.5 ms/step, peak mem 31.20 GiB

Part 5 trains a Zipformer the same way, once per autocast precision, for its throughput
(seconds of audio per second). Each such line summarises the window of steps since the previous one. Windows that start
before ``skip_steps`` (CUDA/Triton warm-up, fp16 loss-scale search) are left out of the
steady-state figures.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from asr_recipes.tools.gpu_check.report import fenced, fmt, shown, table
from asr_recipes.tools.gpu_check.timebox import Finished

_STEP = re.compile(r"step (\d+): (.+?), lr ([^,]+), grad norm ([^,]+), ([\d.]+) utt/s, ([\d.]+) s of audio/s, "
                   r"([\d.]+) ms/step(?:, peak mem ([\d.]+) GiB)?\s*$")
_GROUP = re.compile(r"process group: (\w+) backend, world size (\d+), device (\S+)")
_MODEL = re.compile(r"model: ([\d.]+)M parameters, vocabulary (\d+)")
_PRESCAN_BATCH = re.compile(r"OOM pre-scan: batch of the (.+?) fits \((\d+) cuts, (\d+) s\)")
_PRESCAN_PEAK = re.compile(r"OOM pre-scan: peak memory ([\d.]+) GiB")
_STOPPED = re.compile(r"training stopped at epoch (\d+), step (\d+) \(([\d.]+) min of training\)")
_COUNTER = re.compile(r"(dropped_utterances|skipped_steps): \+\d+ \(total (\d+)\)")
_SAVED = re.compile(r"saved (\S+) \(epoch")


@dataclass(frozen=True)
class Window:
    """One log line: the steps (prev_step, step], per-frame losses and throughput."""

    prev_step: int
    step: int
    losses: dict  # "loss", and "simple"/"pruned" or "full" -> nats per encoder frame
    utt_per_s: float
    audio_per_s: float  # seconds of audio per second
    ms_per_step: float
    peak_gib: Optional[float]  # running peak since training started (CUDA only)


@dataclass
class TrainLog:
    windows: list = field(default_factory=list)
    backend: Optional[str] = None
    world_size: Optional[int] = None
    device: Optional[str] = None
    params_m: Optional[float] = None
    vocab: Optional[int] = None
    prescan_batches: list = field(default_factory=list)  # "longest utterances: 19 cuts, 300 s"
    prescan_peak_gib: Optional[float] = None
    stopped_step: Optional[int] = None
    train_minutes: Optional[float] = None
    counters: dict = field(default_factory=dict)  # dropped_utterances / skipped_steps -> total
    saved: list = field(default_factory=list)  # checkpoint file names, in order


def parse_train_log(text: str) -> TrainLog:
    """Everything the report uses from bin.train's log (main rank)."""
    out = TrainLog()
    prev = 0
    for line in text.splitlines():
        m = _STEP.search(line)
        if m:
            losses = {}
            for item in m.group(2).split(", "):
                name, _, value = item.rpartition(" ")
                losses[name] = float(value)
            step = int(m.group(1))
            out.windows.append(Window(prev, step, losses, float(m.group(5)), float(m.group(6)), float(m.group(7)),
                                      float(m.group(8)) if m.group(8) else None))
            prev = step
        elif m := _GROUP.search(line):
            out.backend, out.world_size, out.device = m.group(1), int(m.group(2)), m.group(3)
        elif m := _MODEL.search(line):
            out.params_m, out.vocab = float(m.group(1)), int(m.group(2))
        elif m := _PRESCAN_BATCH.search(line):
            out.prescan_batches.append(f"{m.group(1)}: {m.group(2)} cuts, {m.group(3)} s")
        elif m := _PRESCAN_PEAK.search(line):
            out.prescan_peak_gib = max(float(m.group(1)), out.prescan_peak_gib or 0.0)
        elif m := _STOPPED.search(line):
            out.stopped_step, out.train_minutes = int(m.group(2)), float(m.group(3))
        elif m := _COUNTER.search(line):
            out.counters[m.group(1)] = int(m.group(2))
        elif m := _SAVED.search(line):
            out.saved.append(Path(m.group(1)).name)
    return out


@dataclass(frozen=True)
class RunSummary:
    steps: int  # last logged step
    steady: list  # windows after the warm-up
    utt_per_s: Optional[float]
    audio_per_s: Optional[float]
    ms_per_step: Optional[float]
    peak_gib: Optional[float]
    first_loss: Optional[float]
    last_loss: Optional[float]
    finite: bool
    falling: Optional[bool]


def _mean(values: Sequence[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def summarize(log: TrainLog, skip_steps: int) -> RunSummary:
    """Steady-state means over the windows that start at or after ``skip_steps``; the loss of the
    first and the last window; whether every logged value is finite and the loss fell."""
    w = log.windows
    steady = [x for x in w if x.prev_step >= skip_steps]
    finite = bool(w) and all(math.isfinite(v) for x in w for v in x.losses.values())
    first, last = (w[0].losses["loss"], w[-1].losses["loss"]) if w else (None, None)
    peaks = [x.peak_gib for x in w if x.peak_gib is not None]
    return RunSummary(
        steps=w[-1].step if w else 0, steady=steady,
        utt_per_s=_mean([x.utt_per_s for x in steady]), audio_per_s=_mean([x.audio_per_s for x in steady]),
        ms_per_step=_mean([x.ms_per_step for x in steady]), peak_gib=max(peaks) if peaks else None,
        first_loss=first, last_loss=last, finite=finite,
        falling=None if len(w) < 2 else finite and last < first,
    )


@dataclass(frozen=True)
class Comparison:
    """full / pruned over the steady windows both runs logged (same steps, hence same batches)."""

    first_step: int
    last_step: int
    step_time_ratio: float
    peak_ratio: Optional[float]  # running peaks at the last common window
    prescan_peak_ratio: Optional[float]  # the same pessimistic batches in both runs


def compare(pruned: TrainLog, full: TrainLog, skip_steps: int) -> Optional[Comparison]:
    """None when the runs share no steady window."""
    a = {x.step: x for x in pruned.windows if x.prev_step >= skip_steps}
    b = {x.step: x for x in full.windows if x.prev_step >= skip_steps}
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    ratio = statistics.fmean(b[s].ms_per_step for s in common) / statistics.fmean(a[s].ms_per_step for s in common)
    pa, pb = a[common[-1]].peak_gib, b[common[-1]].peak_gib
    qa, qb = pruned.prescan_peak_gib, full.prescan_peak_gib
    return Comparison(a[common[0]].prev_step + 1, common[-1], ratio, pb / pa if pa and pb else None,
                      qb / qa if qa and qb else None)


def same_batches(trace_a: Path, trace_b: Path) -> tuple[int, list]:
    """Compares the cut ids of every step both rank-0 traces hold (trainer.trace_dir):
    (steps compared, steps whose batches differ)."""
    def read(path: Path) -> dict:
        file = Path(path) / "rank-0.jsonl"
        if not file.is_file():
            return {}
        return {r["step"]: r["cut_ids"] for r in map(json.loads, file.read_text().splitlines())}

    a, b = read(trace_a), read(trace_b)
    common = sorted(a.keys() & b.keys())
    return len(common), [s for s in common if a[s] != b[s]]


def run_minutes(configured: float, remaining_s: float, reserve_s: float, runs_left: int, startup_s: float,
                floor: float = 0.25) -> float:
    """trainer.max_minutes for the next run: the configured minutes, or less when the deadline
    would otherwise cut a later run or the part after training (``reserve_s``). Each run left is
    counted with half its start-up allowance (the expected start-up); not below ``floor`` unless
    ``configured`` is."""
    share = (remaining_s - reserve_s) / runs_left
    return round(max(min(floor, configured), min(configured, (share - startup_s / 2) / 60)), 2)


def train_command(python: str, loss: str, experiment: str, exp_dir: Path, lang_dir: str, data_dir: Path,
                  minutes: Optional[float], max_steps: Optional[int], log_every_n: int,
                  trace_dir: Optional[Path], overrides: Sequence[str]) -> list[str]:
    """torchrun with one process; the trainer stops after ``minutes`` of training or ``max_steps``."""
    if (minutes is None) == (max_steps is None):
        raise ValueError("give exactly one of minutes and max_steps")
    budget = f"trainer.max_minutes={minutes}" if minutes is not None else f"trainer.max_steps={max_steps}"
    return [
        python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
        "-m", "asr_recipes.bin.train", f"experiment={experiment}", f"loss={loss}", "process_group=always",
        f"exp_dir={exp_dir}", f"tokenizer_dir={lang_dir}", f"data.manifest_dir={data_dir}",
        "data.train_parts=[train-clean-100]", "trainer.validate=false", "trainer.save_every_n=0",
        "trainer.oom_prescan=on", "trainer.progress_bar=false", f"trainer.log_every_n={log_every_n}", budget,
        *([f"trainer.trace_dir={trace_dir}"] if trace_dir else []), *overrides,
    ]


def _loss_text(s: RunSummary) -> str:
    if s.first_loss is None:
        return "-"
    return f"{s.first_loss:.3f} -> {s.last_loss:.3f}"


def _yes_no(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def training_section(heading: str, runs: dict, skip_steps: int, setup: Sequence[str],
                     batches_check: Optional[tuple[int, list]]) -> list[str]:
    """runs: loss -> (Finished, TrainLog). One row per run, then the full/pruned comparison."""
    lines = [heading, "", *setup, ""]
    rows = []
    for loss, (finished, log) in runs.items():
        s = summarize(log, skip_steps)
        steady = f"{s.steady[0].prev_step + 1}-{s.steady[-1].step}" if s.steady else "-"
        parts = ", ".join(f"{k} {v:.3f}" for k, v in log.windows[-1].losses.items() if k != "loss") if log.windows else ""
        rows.append([loss, f"{finished.status()}, {finished.seconds:.0f} s", f"{log.backend or '-'}",
                     s.steps, steady, fmt(s.utt_per_s), fmt(s.audio_per_s), fmt(s.ms_per_step),
                     fmt(s.peak_gib, 2), fmt(log.prescan_peak_gib, 2), _loss_text(s) + (f" ({parts})" if parts else ""),
                     _yes_no(s.finite if log.windows else None), _yes_no(s.falling)])
    lines += table(["loss", "run", "backend", "steps", "steady steps", "utt/s", "audio s/s", "ms/step",
                    "peak GiB", "pre-scan peak GiB", "loss per frame first -> last", "finite", "falling"], rows,
                   "lllrrrrrrrlll")
    logs = {loss: log for loss, (_, log) in runs.items()}
    if "pruned" in logs and "full" in logs:
        c = compare(logs["pruned"], logs["full"], skip_steps)
        lines.append("")
        if c is None:
            lines.append("full vs pruned: no steady-state window in common (a run stopped too early).")
        else:
            lines.append(f"**full / pruned on the same batches** (steps {c.first_step}-{c.last_step}, both runs): "
                         f"step time {c.step_time_ratio:.2f}x, peak memory {fmt(c.peak_ratio, 2, 'x')} "
                         f"(training), {fmt(c.prescan_peak_ratio, 2, 'x')} (pre-scan: the same most "
                         "memory-hungry batches).")
    lines.append("")
    if batches_check is not None:
        n, differ = batches_check
        lines.append(f"Same batches: cut ids of {n} common steps compared (trainer.trace_dir): "
                     + ("identical." if not differ else f"**{len(differ)} differ** (steps {differ[:10]})."))
    else:
        lines.append("Same batches: both runs use the same seeds, sampler and data settings, hence the same batch "
                     "sequence (not traced here: the trace's per-step parameter checksum would slow the steps; the "
                     "smoke mode in CI compares the cut ids step by step).")
    for loss, (finished, log) in runs.items():
        notes = [f"{k} {v}" for k, v in log.counters.items()]
        if log.saved:
            notes.append("saved " + ", ".join(log.saved))
        if log.prescan_batches:
            notes.append("pre-scan batches: " + "; ".join(log.prescan_batches))
        lines += ["", f"- {loss}: `{shown(finished.command)}`" + (f" ({'; '.join(notes)})" if notes else "")]
        if not finished.ok:
            lines += ["", *fenced(finished.output, 25)]
    return lines


def throughput_section(heading: str, runs: dict, skip_steps: int, setup: Sequence[str]) -> list[str]:
    """runs: autocast precision -> (Finished, TrainLog). One row per run; then bf16 / fp16."""
    lines = [heading, "", *setup, ""]
    rows, audio = [], {}
    for amp, (finished, log) in runs.items():
        s = summarize(log, skip_steps)
        audio[amp] = s.audio_per_s
        steady = f"{s.steady[0].prev_step + 1}-{s.steady[-1].step}" if s.steady else "-"
        rows.append([amp, f"{finished.status()}, {finished.seconds:.0f} s", log.params_m or "-", s.steps, steady,
                     fmt(s.audio_per_s), fmt(s.utt_per_s), fmt(s.ms_per_step), fmt(s.peak_gib, 2), _loss_text(s),
                     _yes_no(s.finite if log.windows else None)])
    lines += table(["autocast", "run", "params (M)", "steps", "steady steps", "audio s/s", "utt/s", "ms/step",
                    "peak GiB", "loss per frame first -> last", "finite"], rows, "llrrrrrrrll")
    if audio.get("fp16") and audio.get("bf16"):
        lines += ["", f"bf16 / fp16 throughput: {audio['bf16'] / audio['fp16']:.2f}x"]
    for amp, (finished, _) in runs.items():
        lines += ["", f"- {amp}: `{shown(finished.command)}`"]
        if not finished.ok:
            lines += ["", *fenced(finished.output, 25)]
    return lines

"""The GPU check: five time-boxed parts, in order of importance, into one markdown report.

    run_check(cfg)   cfg = conf/gpu_check.yaml resolved to plain Python; returns the exit status

1 kernels (pytest tests/rnnt and the Swoosh kernel tests), 2 bench (bin.bench_loss), 3 train
(bin.train under torchrun, pruned then full loss), 4 decode (bin.bench_decode with part 3's
checkpoint), 5 zipformer (bin.train of a Zipformer with ScaledAdam, one run per autocast
precision: seconds of audio trained per second). Each part is a
separate process group with a time limit, cut to what is left of ``deadline_minutes``; the
report is rewritten after every step, so a run stopped at any moment still holds the parts
done. ``mode=smoke`` runs the same parts at tiny sizes on a CPU (what CI exercises).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.machine import cpu_name
from asr_recipes.tools.bench.decode import SpeedRow, speed_table
from asr_recipes.tools.gpu_check import kernels, loss_bench, training
from asr_recipes.tools.gpu_check.bundle import TEST_PART, TRAIN_PART, BundleError, install_bundle
from asr_recipes.tools.gpu_check.report import Report, fenced, fmt, shown, table
from asr_recipes.tools.gpu_check.timebox import Finished, run_timed

REPO = Path(__file__).resolve().parents[3]
PARTS = ("kernels", "bench", "train", "decode", "zipformer")
HEADINGS = {
    "kernels": "## 1. Kernels: pytest of the loss library and the Swoosh activations",
    "bench": "## 2. Loss benchmark: torchaudio full loss vs our pruned loss (one training-loss step)",
    "train": "## 3. Training: bin.train under torchrun --nproc_per_node 1, pruned vs full loss",
    "decode": "## 4. Decoding: greedy and modified beam search at fixed batch sizes",
    "zipformer": "## 5. Zipformer training throughput: ScaledAdam, fp16 and bf16 autocast",
}
MIN_PART_S = 30.0  # a part (or training run) is not started with less time than this left


def resolve_mode(mode: str) -> str:
    if mode not in ("gpu", "smoke", "auto"):
        raise ValueError(f"mode must be gpu, smoke or auto, got {mode!r}")
    if mode != "auto":
        return mode
    import torch

    return "gpu" if torch.cuda.is_available() else "smoke"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "unknown (no git metadata here)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git here)"


def _device_line(mode: str) -> str:
    host = f"{cpu_name()}, {os.cpu_count()} CPUs"
    if mode != "gpu":
        return f"- device: CPU only ({host})"
    try:  # nvidia-smi first: it does not open a CUDA context in this (long-lived) process
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        gpus = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0 and gpus:
            return f"- device: {'; '.join(gpus)} (name, memory, driver, compute capability); host {host}"
    except (OSError, subprocess.SubprocessError):
        pass
    import torch

    if not torch.cuda.is_available():
        return f"- device: **no CUDA device visible** although mode=gpu; host {host}"
    p = torch.cuda.get_device_properties(0)
    return f"- device: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}; host {host}"


def _versions() -> str:
    from importlib import metadata

    import torch

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__} (CUDA {torch.version.cuda})"]
    for name in ("torchaudio", "triton", "lhotse"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} -")
    if torch.cuda.is_available():
        nccl = torch.cuda.nccl.version()  # a tuple in recent torch, an int in old ones
        parts.append("NCCL " + (".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)))
    return "- versions: " + ", ".join(parts)


@dataclass
class Context:
    mode: str
    settings: Mapping[str, Any]
    work_dir: Path
    log_path: Path
    report: Report
    deadline: float  # time.monotonic()
    parts: Sequence[str] = ()  # the parts this run does, in order
    bundle: dict = field(default_factory=dict)
    data_dir: Optional[Path] = None
    summary: dict = field(default_factory=dict)  # part -> (verdict, details, seconds)

    @property
    def env(self) -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        if self.mode == "gpu":
            env.pop("TRITON_INTERPRET", None)  # the point is to compile the kernels
        return env

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, command: Sequence[str], timeout_s: float) -> Optional[Finished]:
        """run_timed from the repository root, cut to the deadline; None if too little time is left."""
        limit = min(timeout_s, self.remaining())
        if limit < MIN_PART_S:
            return None
        return run_timed(command, limit, self.log_path, cwd=REPO, env=self.env)


def _skipped(heading: str, why: str) -> list[str]:
    return [heading, "", f"**skipped**: {why}"]


def run_kernels(ctx: Context) -> tuple[bool, str]:
    s = ctx.settings["kernels"]
    finished = ctx.run(kernels.pytest_command(sys.executable, s["paths"]), s["timeout_s"])
    if finished is None:
        ctx.report.put("kernels", _skipped(HEADINGS["kernels"], "no time left before the deadline"))
        return False, "skipped (deadline)"
    counts = kernels.parse_pytest(finished.output)
    import torch

    # tests/rnnt/triton_device.py: compiled on CUDA when the test process sees a GPU, else interpreted
    where = ("Triton kernels compiled and run on the GPU" if torch.cuda.is_available()
             else "no GPU visible: Triton kernels interpreted on the CPU (TRITON_INTERPRET=1)")
    where += ", tests: " + " ".join(s["paths"])
    ctx.report.put("kernels", kernels.kernel_section(HEADINGS["kernels"], finished, counts, where))
    failed = counts.counts["FAILED"] + counts.counts["ERROR"]
    ok = finished.ok and counts.ok
    return ok, f"{finished.status()}: {counts.counts['PASSED']} passed, {failed} failed"


def run_bench(ctx: Context) -> tuple[bool, str]:
    s = ctx.settings["bench"]
    finished = ctx.run([sys.executable, "-m", "asr_recipes.bin.bench_loss", *s["overrides"]], s["timeout_s"])
    if finished is None:
        ctx.report.put("bench", _skipped(HEADINGS["bench"], "no time left before the deadline"))
        return False, "skipped (deadline)"
    bench = loss_bench.parse_bench(finished.output)
    ctx.report.put("bench", loss_bench.bench_section(HEADINGS["bench"], finished, bench, ctx.mode == "gpu"))
    missed = sum("missed" in row[2] for row in loss_bench.target_rows(bench)) if ctx.mode == "gpu" else 0
    return finished.ok and bool(bench.rows), finished.status() + (f", {missed} target(s) missed" if missed else "")


def _train_setup(ctx: Context, s: Mapping[str, Any]) -> list[str]:
    part = ctx.bundle["parts"][TRAIN_PART]
    budget = (f"{s['minutes']:g} min of training (less if the deadline needs it: trainer.max_minutes in the "
              "commands below)" if s["minutes"] else f"{s['max_steps']} steps")
    return [f"Experiment `{s['experiment']}` with `{' '.join(s['overrides'])}`; each run stops after {budget} "
            f"(trainer.max_minutes/max_steps; start-up, OOM pre-scan and the last checkpoint come on top). Data: the "
            f"bundle's {part['utterances']} training utterances ({part['hours']:.2f} h, mean {part['mean_seconds']} s, "
            f"max {part['max_seconds']} s, {ctx.bundle['tokenizer']['kind']} {ctx.bundle['tokenizer']['vocab_size']}) "
            f"listed {s['repeat']}x, so no epoch ends during a run. Figures are means over the log windows after step "
            f"{s['skip_steps']} (every {s['log_every_n']} steps); peak memory is torch.cuda.max_memory_allocated "
            "('-' on a CPU)."]


def _reserve_after_train(ctx: Context) -> float:
    """Seconds the parts after training need (decode's benchmark, the Zipformer runs at their
    configured minutes with half their start-up allowance each): training shrinks to leave them."""
    reserve = 0.0
    if "decode" in ctx.parts:
        d = ctx.settings["decode"]
        reserve += d["max_seconds"] * len(d["batch_sizes"]) + 30
    if "zipformer" in ctx.parts:
        z = ctx.settings["zipformer"]
        reserve += len(z["precisions"]) * (60 * (z["minutes"] or 0) + z["startup_s"] / 2)
    return reserve


def _train_run(ctx: Context, cmd: Sequence[str], exp: Path, minutes: Optional[float],
               startup_s: float) -> Optional[tuple[Finished, training.TrainLog]]:
    """One bin.train command (``cmd``, writing to ``exp``), time-boxed to its training minutes plus
    the start-up allowance: (how it finished, its parsed log), or None when the deadline left no
    time to start it. The log is the trainer's log file when it got as far as writing one, else
    what the process printed (a run that failed at start-up)."""
    finished = ctx.run(cmd, (minutes or 0) * 60 + startup_s)
    if finished is None:
        return None
    log_file = exp / "log" / "train.log"
    return finished, training.parse_train_log(log_file.read_text() if log_file.is_file() else finished.output)


def run_train(ctx: Context) -> tuple[bool, str]:
    s = ctx.settings["train"]
    runs: dict = {}
    statuses, ok = [], True
    reserve = _reserve_after_train(ctx)
    for i, loss in enumerate(s["losses"]):
        minutes = s["minutes"] and training.run_minutes(s["minutes"], ctx.remaining(), reserve, len(s["losses"]) - i,
                                                        s["startup_s"])
        exp, trace = ctx.work_dir / f"train-{loss}", ctx.work_dir / f"trace-{loss}"
        shutil.rmtree(exp, ignore_errors=True)  # a leftover checkpoint would be resumed
        shutil.rmtree(trace, ignore_errors=True)
        cmd = training.train_command(sys.executable, loss, s["experiment"], exp, ctx.bundle["lang_dir"], ctx.data_dir,
                                     minutes, s["max_steps"], s["log_every_n"], trace if s["trace"] else None,
                                     s["overrides"])
        run = _train_run(ctx, cmd, exp, minutes, s["startup_s"])
        if run is None:
            statuses.append(f"{loss} skipped (deadline)")
            ok = False
            continue
        finished, log = run
        runs[loss] = run
        summary = training.summarize(log, s["skip_steps"])
        ok &= finished.ok and summary.finite
        statuses.append(f"{loss} {finished.status()}, {summary.steps} steps" + ("" if summary.finite else ", NON-FINITE loss")
                        + (", loss not falling" if summary.falling is False else ""))
        check = None
        if s["trace"] and len(runs) == 2:
            check = training.same_batches(ctx.work_dir / "trace-pruned", ctx.work_dir / "trace-full")
        ctx.report.put("train", training.training_section(HEADINGS["train"], runs, s["skip_steps"],
                                                          _train_setup(ctx, s), check))
    if not runs:
        ctx.report.put("train", _skipped(HEADINGS["train"], "no time left before the deadline"))
    return ok, "; ".join(statuses)


def newest_checkpoint(exp_dir: Path) -> Optional[Path]:
    found = ckpt_io.resume_candidates(exp_dir) if exp_dir.is_dir() else []
    return found[0] if found else None


def run_decode(ctx: Context) -> tuple[bool, str]:
    s = ctx.settings["decode"]
    ckpt = newest_checkpoint(ctx.work_dir / "train-pruned")
    if ckpt is None:
        ctx.report.put("decode", _skipped(HEADINGS["decode"], "no checkpoint from part 3 (loss=pruned) in "
                                                             f"{ctx.work_dir / 'train-pruned'}"))
        return False, "skipped (no checkpoint)"
    out_json = ctx.work_dir / "decode.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "asr_recipes.bin.bench_decode", f"checkpoint={ckpt}",
           f"cuts={ctx.data_dir / f'librispeech_cuts_{TEST_PART}.jsonl.gz'}",
           f"batch_sizes=[{','.join(map(str, s['batch_sizes']))}]", f"methods=[{','.join(s['methods'])}]",
           f"beam={s['beam']}", f"max_seconds={s['max_seconds']}", f"device={s['device']}", f"out_json={out_json}"]
    finished = ctx.run(cmd, s["timeout_s"])
    if finished is None:
        ctx.report.put("decode", _skipped(HEADINGS["decode"], "no time left before the deadline"))
        return False, "skipped (deadline)"
    test = ctx.bundle["parts"][TEST_PART]
    lines = [HEADINGS["decode"], "", f"{finished.status()}, {finished.seconds:.0f} s. Weights: {ckpt.name} of part 3's "
             f"loss=pruned run (trained for minutes at most: the error rates show that decoding works end to end, not "
             f"accuracy). Test part: {test['utterances']} utterances, mean {test['mean_seconds']} s. "
             f"`{shown(finished.command)}`", ""]
    rows = [SpeedRow(**r) for r in json.loads(out_json.read_text())["rows"]] if out_json.is_file() else []
    if rows:
        lines += speed_table(rows)
    if not finished.ok:
        lines += ["", *fenced(finished.output, 25)]
    ctx.report.put("decode", lines)
    return finished.ok and bool(rows), finished.status()


def _zipformer_setup(ctx: Context, s: Mapping[str, Any]) -> list[str]:
    part = ctx.bundle["parts"][TRAIN_PART]
    budget = f"{s['minutes']:g} min of training" if s["minutes"] else f"{s['max_steps']} steps"
    return [f"Experiment `{s['experiment']}` with `{' '.join(s['overrides'])}` (loss=pruned), once per autocast "
            f"precision; each run stops after {budget} (less if the deadline needs it; start-up and OOM pre-scan come "
            f"on top). Same data as part 3 ({part['utterances']} training utterances, {part['hours']:.2f} h, listed "
            f"{ctx.settings['train']['repeat']}x). **audio s/s** = seconds of audio trained per second (the training "
            f"throughput), mean over the log windows after step {s['skip_steps']} (every {s['log_every_n']} steps)."]


def run_zipformer(ctx: Context) -> tuple[bool, str]:
    s = ctx.settings["zipformer"]
    runs: dict = {}
    statuses, ok = [], True
    for i, amp in enumerate(s["precisions"]):
        minutes = s["minutes"] and training.run_minutes(s["minutes"], ctx.remaining(), 0, len(s["precisions"]) - i,
                                                        s["startup_s"])
        exp = ctx.work_dir / f"zipformer-{amp}"
        shutil.rmtree(exp, ignore_errors=True)  # a leftover checkpoint would be resumed
        cmd = training.train_command(sys.executable, "pruned", s["experiment"], exp, ctx.bundle["lang_dir"],
                                     ctx.data_dir, minutes, s["max_steps"], s["log_every_n"], None,
                                     [*s["overrides"], f"trainer.amp={amp}"])
        run = _train_run(ctx, cmd, exp, minutes, s["startup_s"])
        if run is None:
            statuses.append(f"{amp} skipped (deadline)")
            ok = False
            continue
        finished, log = run
        runs[amp] = run
        summary = training.summarize(log, s["skip_steps"])
        ok &= finished.ok and summary.finite
        statuses.append(f"{amp} {finished.status()}, {summary.steps} steps, {fmt(summary.audio_per_s)} audio s/s"
                        + ("" if summary.finite else ", NON-FINITE loss"))
        ctx.report.put("zipformer", training.throughput_section(HEADINGS["zipformer"], runs, s["skip_steps"],
                                                                _zipformer_setup(ctx, s)))
    if not runs:
        ctx.report.put("zipformer", _skipped(HEADINGS["zipformer"], "no time left before the deadline"))
    return ok, "; ".join(statuses)


RUNNERS = {"kernels": run_kernels, "bench": run_bench, "train": run_train, "decode": run_decode,
           "zipformer": run_zipformer}


def _paths(cfg: Mapping[str, Any]) -> tuple[Path, Path]:
    work_dir = Path(cfg["work_dir"] or Path(tempfile.gettempdir()) / "asr-recipes-gpu-check").absolute()
    if cfg["report"]:
        report = Path(cfg["report"]).absolute()
    elif os.environ.get("OUT"):
        report = Path(os.environ["OUT"]) / "gpu-check.md"
    else:
        report = work_dir / "gpu-check.md"
    return work_dir, report


def run_check(cfg: Mapping[str, Any]) -> int:
    """Runs cfg["parts"]; 0 if every part ran and passed its checks (tests pass, losses finite), else 1.
    Missed speed targets and a loss that did not fall are reported, not failures. The report path
    is printed first."""
    started = time.monotonic()
    mode = resolve_mode(cfg["mode"])
    parts = list(cfg["parts"])
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {list(PARTS)}, got {parts}")
    settings = cfg[mode]
    work_dir, report_path = _paths(cfg)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = report_path.with_suffix(".log")
    log_path.unlink(missing_ok=True)
    print(f"gpu_check: mode {mode}, report {report_path}, log {log_path}", flush=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    header = [f"- date: {now:%Y-%m-%d %H:%M} UTC; mode: {mode}; parts: {', '.join(parts)}; deadline "
              f"{settings['deadline_minutes']} min", _device_line(mode), _versions(), f"- commit: {_git_commit()}",
              f"- command: `{' '.join([Path(sys.executable).name, '-m', 'asr_recipes.bin.gpu_check', *sys.argv[1:]])}`"]
    report = Report(report_path, f"GPU check ({mode} mode)", header)
    ctx = Context(mode, settings, work_dir, log_path, report, started + 60 * settings["deadline_minutes"], parts)
    try:
        ctx.data_dir = work_dir / "data"
        ctx.bundle = install_bundle(Path(cfg["bundle_dir"]), ctx.data_dir, settings["train"]["repeat"])
    except BundleError as e:
        report.put("bundle", ["## Data bundle", "", f"**error**: {e}"])
        print(report.text(), flush=True)
        return 1
    spec = ctx.bundle["spec"]
    report.header.append(f"- data: bundle {cfg['bundle_dir']}: synthesized `{spec['task']}`, "
                         + ", ".join(f"{p}: {v['utterances']} utterances of {spec['concat']} sentences, {v['hours']:.2f} h"
                                     for p, v in ctx.bundle["parts"].items()))

    def summary_lines() -> list[str]:
        rows = [[p, *ctx.summary.get(p, ("-", "not run (yet)", ""))] for p in parts]
        return ["## Summary", "", *table(["part", "verdict", "details", "seconds"], rows, "lllr")]

    report.put("summary", summary_lines())
    failed = False
    for part in parts:
        part_started = time.monotonic()
        report.running(part, HEADINGS[part], f"part {part}")
        try:
            ok, status = RUNNERS[part](ctx)
        except Exception:  # a bug here must not cost the remaining parts of a rare GPU run
            trace = traceback.format_exc()
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(trace)
            report.put(part, [HEADINGS[part], "", "**error** in the check itself (not in the part it ran):", "",
                              *fenced(trace, 30)])
            ok, status = False, "error in the check: " + trace.strip().splitlines()[-1][:200]
        failed |= not ok
        ctx.summary[part] = ("ok" if ok else "**FAILED**", status, f"{time.monotonic() - part_started:.0f}")
        report.put("summary", summary_lines())
    print(report.text(), flush=True)
    return 1 if failed else 0

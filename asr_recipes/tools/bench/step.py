"""Benchmark: where one training step's time goes, on the batches training itself would see.

    times, audio, peak = time_steps(model, optimizer, loader, loss, warmup=5, batches=30, grad_clip=5.0)
    print(table(times, audio, peak))

``python -m asr_recipes.bin.bench_step`` takes the configuration of ``asr_recipes.bin.train``
(same overrides), builds the model and the training data pipeline (its workers, augmentation
and batch size) and calls these. A step is the training objective itself
(asr_recipes.training.objective.TransducerObjective, after the warm-up: full loss scales), so
the CTC head (loss.ctc_scale) and CR-CTC (loss.cr_scale: both SpecAugment views through the
encoder as one batch of 2N) cost what they cost in training. Each phase of ``batches``
optimizer steps after ``warmup`` untimed ones is timed:

* data wait: blocking on the loader for the next batch (what the workers did not hide);
* encoder forward: ``Transducer.encode`` (front end + encoder; with CR-CTC on both views);
* losses forward: decoder, simple loss, prune ranges, pruned joiner + loss (as Transducer.forward),
  and the CTC head's loss and the consistency term when configured;
* backward: every loss back to every weight;
* optimizer: gradient clipping (AdamW's; ScaledAdam clips inside) + the optimizer's step.

Then, on the same batches (both views with CR-CTC), the encoder alone forward + backward (a
scalar of its output), to split the backward between the encoder and the losses. Prints one
table (median ms per step and share of the step), the training speed in seconds of audio
per second and the peak memory (asr_recipes.tools.bench.memory: on CUDA the tensors allocated
during the timed steps; on CPU the process's peak RSS, which counts more than the step).
Random weights: the costs of a step do not depend on what the model has learned.

``clock``: what a phase's time is. ``time.perf_counter`` (wall clock, the default) is what
training waits for, but on a machine that other jobs share it measures them too (steps took
2-8x their idle time, varying by the minute, on a 2-core machine with 4-5 other jobs).
``time.process_time`` is the CPU time of this process: with one torch thread (bench_step
threads=1) it counts the step's own computation whenever it was scheduled, so the ratios of
two variants timed one after the other barely depend on the load. (With several threads,
OpenMP threads spinning while they wait for each other also count.) The data loader's worker
processes are not in it: "data wait" is then the loading the main process did itself.
"""

import statistics
import time
from typing import Callable, Dict, List

import torch

from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.tools.bench.memory import PeakMemory, peak_memory, start_peak_memory
from asr_recipes.training.objective import LossConfig, TransducerObjective

PHASES = ("data wait", "encoder forward", "losses forward", "backward", "optimizer")
ENCODER_ALONE = "encoder forward + backward"  # timed separately, after the step


def step_losses(objective: TransducerObjective, batch, marks: List[float] | None = None,
                clock: Callable[[], float] = time.perf_counter):
    """The objective on one batch at full loss scales (step = warm_step): (total (N,), parts)
    as TransducerObjective.forward returns them; appends clock() to ``marks`` when the
    encoder has run and when the losses have."""
    model = objective.model
    hook = None
    if marks is not None:
        hook = model.encoder.register_forward_hook(lambda *_: marks.append(clock()))
    try:
        total, parts = objective(batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"],
                                 objective.cfg.warm_step, second_view=batch.get("second_view"))
    finally:
        if hook is not None:
            hook.remove()
    if marks is not None:
        marks.append(clock())
    return total, parts


def encoder_input(batch, loss: LossConfig):
    """(features, feature_lens) the encoder gets in a training step: with CR-CTC both views
    as one batch, (2N, T, F) and (2N,)."""
    if not loss.two_views:
        return batch["features"], batch["feature_lens"]
    second = batch.get("second_view", batch["features"])
    return torch.cat([batch["features"], second]), batch["feature_lens"].repeat(2)


def time_steps(model, optimizer, loader, loss: LossConfig, warmup: int, batches: int,
               grad_clip: float | None, clock: Callable[[], float] = time.perf_counter,
               ) -> tuple[Dict[str, List[float]], List[float], PeakMemory]:
    """Seconds per phase (PHASES and ENCODER_ALONE) by ``clock`` for each timed step, the
    seconds of audio in each timed batch (one view), and the peak memory after the timed steps
    (asr_recipes.tools.bench.memory, on the model's device)."""
    times: Dict[str, List[float]] = {p: [] for p in (*PHASES, ENCODER_ALONE)}
    audio: List[float] = []
    objective = TransducerObjective(model, loss).train()
    device = next(model.parameters()).device
    it = iter(loader)
    for i in range(warmup + batches):
        if i == warmup:
            start_peak_memory(device)
        t0 = clock()
        try:
            batch = next(it)
        except StopIteration:
            raise SystemExit(f"bench_step: the training data gave only {i} batches; lower warmup/batches")
        t1 = clock()
        marks: List[float] = []
        total, _ = step_losses(objective, batch, marks, clock)
        t2, t3 = marks
        frames = model.encoder.output_lengths(batch["feature_lens"]).sum()
        optimizer.zero_grad(set_to_none=True)
        (total.sum() / frames).backward()
        t4 = clock()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        t5 = clock()
        # the encoder alone on the same batch (its gradients are thrown away)
        out, _ = model.encode(*encoder_input(batch, loss))
        out.square().mean().backward()
        optimizer.zero_grad(set_to_none=True)
        t6 = clock()
        if i < warmup:
            continue
        for phase, seconds in zip((*PHASES, ENCODER_ALONE), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            times[phase].append(seconds)
        audio.append(float(batch["feature_lens"].sum()) * FRAME_SHIFT)
    return times, audio, peak_memory(device)


def table(times: Dict[str, List[float]], audio: List[float], peak: PeakMemory | None = None) -> str:
    med = {p: statistics.median(v) for p, v in times.items()}
    step = sum(med[p] for p in PHASES)
    rows = [(p, med[p]) for p in PHASES]
    rows.append(("step (sum of the medians)", step))
    rows.append((f"{ENCODER_ALONE} alone", med[ENCODER_ALONE]))
    rows.append(("=> losses forward + backward (step - data - optimizer - encoder)",
                 step - med["data wait"] - med["optimizer"] - med[ENCODER_ALONE]))
    lines = [f"| {name} | {seconds * 1e3:.1f} | {100 * seconds / step:.1f}% |" for name, seconds in rows]
    per_batch = statistics.median(audio)
    return "\n".join(["| phase | median ms per step | share |", "|---|---:|---:|", *lines, "",
                      f"{len(audio)} timed steps, median {per_batch:.1f} s of audio per batch: "
                      f"{per_batch / step:.1f} s of audio trained per second",
                      *([] if peak is None else ["", f"peak memory: {peak.bytes / 2**20:.0f} MiB, {peak.what}"])])

"""Benchmark: where one training step's time goes, on the batches training itself would see.

    times, audio = time_steps(model, optimizer, loader, loss, warmup=5, batches=30, grad_clip=5.0)
    print(table(times, audio))

``python -m asr_recipes.bin.bench_step`` takes the configuration of ``asr_recipes.bin.train``
(same overrides), builds the model and the training data pipeline (its workers, augmentation
and batch size) and calls these. Each phase of ``batches`` optimizer steps after ``warmup``
untimed ones is timed:

* data wait: blocking on the loader for the next batch (what the workers did not hide);
* encoder forward: ``Transducer.encode`` (front end + Conformer);
* losses forward: decoder, simple loss, prune ranges, pruned joiner + loss (as Transducer.forward);
* backward: both losses back to every weight;
* optimizer: gradient clipping (AdamW's; ScaledAdam clips inside) + the optimizer's step.

Then, on the same batches, the encoder alone forward + backward (a scalar of its output), to
split the backward between the encoder and the losses. Prints one table (median ms per step and
share of the step) and the training speed in seconds of audio per second. Random weights: the
costs of a step do not depend on what the model has learned.
"""

import statistics
import time
from typing import Dict, List

import torch

from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.training.objective import LossConfig

PHASES = ("data wait", "encoder forward", "losses forward", "backward", "optimizer")
ENCODER_ALONE = "encoder forward + backward"  # timed separately, after the step


def step_losses(model, batch, loss: LossConfig, marks: List[float] | None = None):
    """(simple, pruned) losses summed over the batch: Transducer.forward split at the encoder
    (encode, then losses); appends perf_counter() to ``marks`` after each of the two."""
    encoder_out, encoder_lens = model.encode(batch["features"], batch["feature_lens"])
    if marks is not None:
        marks.append(time.perf_counter())
    simple, pruned = model.losses(encoder_out, encoder_lens, batch["tokens"], batch["token_lens"], loss.lattice, "sum")
    if marks is not None:
        marks.append(time.perf_counter())
    return simple, pruned


def time_steps(model, optimizer, loader, loss: LossConfig, warmup: int, batches: int,
               grad_clip: float | None) -> tuple[Dict[str, List[float]], List[float]]:
    """Seconds per phase (PHASES and ENCODER_ALONE) for each timed step, and the seconds of audio
    in each timed batch."""
    times: Dict[str, List[float]] = {p: [] for p in (*PHASES, ENCODER_ALONE)}
    audio: List[float] = []
    simple_scale, pruned_scale = loss.scales.at(loss.warm_step)  # after the warm-up (the cost is the same)
    it = iter(loader)
    for i in range(warmup + batches):
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            raise SystemExit(f"bench_step: the training data gave only {i} batches; lower warmup/batches")
        t1 = time.perf_counter()
        marks: List[float] = []
        simple, pruned = step_losses(model, batch, loss, marks)
        t2, t3 = marks
        frames = model.encoder.output_lengths(batch["feature_lens"]).sum()
        total = (simple_scale * simple + pruned_scale * pruned) / frames
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        t4 = time.perf_counter()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        t5 = time.perf_counter()
        # the encoder alone on the same batch (its gradients are thrown away)
        out, _ = model.encode(batch["features"], batch["feature_lens"])
        out.square().mean().backward()
        optimizer.zero_grad(set_to_none=True)
        t6 = time.perf_counter()
        if i < warmup:
            continue
        for phase, seconds in zip((*PHASES, ENCODER_ALONE), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            times[phase].append(seconds)
        audio.append(float(batch["feature_lens"].sum()) * FRAME_SHIFT)
    return times, audio


def table(times: Dict[str, List[float]], audio: List[float]) -> str:
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
                      f"{per_batch / step:.0f} s of audio trained per second"])

"""Benchmark: where one training step's time goes, on the batches training itself would see.

    python -m asr_recipes.bin.bench_step experiment=mini tokenizer_dir=<lang> data.manifest_dir=<fbank>
    python -m asr_recipes.bin.bench_step ... data.max_duration=30 batches=40

Takes the configuration of ``asr_recipes.bin.train`` (same overrides), builds the model and the
training data pipeline (its workers, augmentation and batch size), and times each phase of
``batches`` optimizer steps after ``warmup`` untimed ones:

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
from datetime import date
from typing import Dict, List

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.machine import cpu_name
from asr_recipes.models.build import build_transducer, count_parameters
from asr_recipes.training.objective import LossConfig, encoder_frames
from asr_recipes.training.trainer import make_optimizer, seed_everything

PHASES = ("data wait", "encoder forward", "losses forward", "backward", "optimizer")
ENCODER_ALONE = "encoder forward + backward"  # timed separately, after the step


def step_losses(model, batch, loss: LossConfig, marks: List[float] | None = None):
    """(simple, pruned) losses summed over the batch: Transducer.forward split at the encoder
    (encode, then losses); appends perf_counter() to ``marks`` after each of the two."""
    encoder_out, encoder_lens = model.encode(batch["features"], batch["feature_lens"])
    if marks is not None:
        marks.append(time.perf_counter())
    simple, pruned = model.losses(encoder_out, encoder_lens, batch["tokens"], batch["token_lens"],
                                  loss.prune_range, loss.am_scale, loss.lm_scale, "sum", loss.delay_penalty,
                                  loss.rnnt_type)
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
        frames = encoder_frames(batch["feature_lens"]).sum()
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


@hydra.main(config_path=CONFIG_PATH, config_name="bench_step", version_base="1.3")
def main(cfg: DictConfig) -> None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    tokenizer = load_tokenizer(cfg.tokenizer_dir)
    seed_everything(cfg.trainer.seed)
    model = build_transducer(resolved["model"], vocab_size=tokenizer.vocab_size)
    model.train()
    optimizer = make_optimizer(model, cfg.optim)
    data = DataModule(resolved["data"], tokenizer)
    loader = data.train_dataloader(0, 0, 1)
    loss = LossConfig(**resolved["loss"])
    if loss.type != "pruned":
        raise SystemExit("bench_step: times the pruned loss's phases; loss.type must be pruned")
    times, audio = time_steps(model, optimizer, loader, loss, int(cfg.warmup), int(cfg.batches),
                              cfg.optim.grad_clip)
    print(f"### training step profile ({date.today()})\n")
    print(f"- {count_parameters(model) / 1e6:.2f} M parameters, vocabulary {tokenizer.vocab_size}, "
          f"data.max_duration {cfg.data.max_duration} s, data.num_workers {cfg.data.num_workers}, "
          f"loss.rnnt_type {loss.rnnt_type}, prune_range {loss.prune_range}")
    print(f"- {cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads\n")
    print(table(times, audio))


if __name__ == "__main__":
    main()

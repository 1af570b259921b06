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
* optimizer: gradient clipping + AdamW.

Then, on the same batches, the encoder alone forward + backward (a scalar of its output), to
split the backward between the encoder and the losses. Prints one table (median ms per step and
share of the step) and the training speed in seconds of audio per second. Random weights: the
costs of a step do not depend on what the model has learned.
"""

import logging
import statistics
import time
from datetime import date
from typing import Dict, List

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import asr_recipes.rnnt as k2
from asr_recipes.bin import CONFIG_PATH
from asr_recipes.constants import FRAME_SHIFT, frames_after_subsampling
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.machine import cpu_name
from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.models.transducer import lattice_boundary
from asr_recipes.training.objective import LossConfig
from asr_recipes.training.trainer import seed_everything

log = logging.getLogger(__name__)

PHASES = ("data wait", "encoder forward", "losses forward", "backward", "optimizer")


def step_losses(model, batch, loss: LossConfig, marks: List[float] | None = None):
    """(simple, pruned) losses summed over the batch, computed as Transducer.forward does; appends
    perf_counter() to ``marks`` after the encoder and after the losses."""
    y, sos_y = model._labels(batch["tokens"], batch["token_lens"])
    encoder_out, encoder_lens = model.encode(batch["features"], batch["feature_lens"])
    if marks is not None:
        marks.append(time.perf_counter())
    decoder_out = model.decoder(sos_y)
    boundary = lattice_boundary(batch["token_lens"], encoder_lens)
    simple, (px_grad, py_grad) = model.simple_loss(encoder_out, decoder_out, y, boundary, loss.am_scale,
                                                   loss.lm_scale, "sum", loss.delay_penalty, loss.rnnt_type)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range=loss.prune_range)
    pruned = model.pruned_loss(encoder_out, decoder_out, y, ranges, boundary, "sum", loss.delay_penalty,
                               loss.rnnt_type)
    if marks is not None:
        marks.append(time.perf_counter())
    return simple, pruned


def time_steps(model, optimizer, loader, loss: LossConfig, warmup: int, batches: int,
               grad_clip: float) -> tuple[Dict[str, List[float]], List[float]]:
    """Seconds per phase for each timed step, and the seconds of audio in each timed batch."""
    times: Dict[str, List[float]] = {p: [] for p in PHASES + ("encoder forward + backward",)}
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
        frames = frames_after_subsampling(batch["feature_lens"]).sum()
        total = (simple_scale * simple + pruned_scale * pruned) / frames
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        t4 = time.perf_counter()
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
        for phase, seconds in zip(PHASES + ("encoder forward + backward",),
                                  (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            times[phase].append(seconds)
        audio.append(float(batch["feature_lens"].sum()) * FRAME_SHIFT)
    return times, audio


def table(times: Dict[str, List[float]], audio: List[float]) -> str:
    med = {p: statistics.median(v) for p, v in times.items()}
    step = sum(med[p] for p in PHASES)
    enc = med["encoder forward + backward"]
    rows = [f"| {p} | {med[p] * 1e3:.1f} | {100 * med[p] / step:.1f}% |" for p in PHASES]
    rows.append(f"| step (sum of the medians) | {step * 1e3:.1f} | 100% |")
    rows.append(f"| encoder forward + backward alone | {enc * 1e3:.1f} | {100 * enc / step:.1f}% |")
    rows.append(f"| => losses forward + backward (step - data - optimizer - encoder) | "
                f"{(step - med['data wait'] - med['optimizer'] - enc) * 1e3:.1f} | "
                f"{100 * (step - med['data wait'] - med['optimizer'] - enc) / step:.1f}% |")
    speed = statistics.median(audio) / step
    return "\n".join(["| phase | median ms per step | share |", "|---|---:|---:|", *rows, "",
                      f"{len(audio)} timed steps, median {statistics.median(audio):.1f} s of audio per batch: "
                      f"{speed:.0f} s of audio trained per second"])


@hydra.main(config_path=CONFIG_PATH, config_name="bench_step", version_base="1.3")
def main(cfg: DictConfig) -> None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    torch.set_num_threads(int(cfg.threads)) if cfg.threads else None
    tokenizer = load_tokenizer(cfg.tokenizer_dir)
    seed_everything(cfg.trainer.seed)
    model = build_transducer(ModelConfig.from_mapping(resolved["model"]).to_dict(), vocab_size=tokenizer.vocab_size)
    model.train()
    o = cfg.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                  weight_decay=o.weight_decay)
    data = DataModule(resolved["data"], tokenizer)
    loader = data.train_dataloader(0, 0, 1)
    loss = LossConfig(**resolved["loss"])
    if loss.type != "pruned":
        raise SystemExit("bench_step: times the pruned loss's phases; loss.type must be pruned")
    times, audio = time_steps(model, optimizer, loader, loss, int(cfg.warmup), int(cfg.batches),
                              float(o.grad_clip))
    print(f"### training step profile ({date.today()})\n")
    print(f"- {count_parameters(model) / 1e6:.2f} M parameters, vocabulary {tokenizer.vocab_size}, "
          f"data.max_duration {cfg.data.max_duration} s, data.num_workers {cfg.data.num_workers}, "
          f"loss.rnnt_type {loss.rnnt_type}, prune_range {loss.prune_range}")
    print(f"- {cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads\n")
    print(table(times, audio))


if __name__ == "__main__":
    main()

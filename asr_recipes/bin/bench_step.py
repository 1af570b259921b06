"""Benchmark: where one training step's time goes, on the batches training itself would see.

    python -m asr_recipes.bin.bench_step experiment=mini tokenizer_dir=<lang> data.manifest_dir=<fbank>
    python -m asr_recipes.bin.bench_step ... data.max_duration=30 batches=40
    python -m asr_recipes.bin.bench_step ... model.ctc_head=true loss.ctc_scale=0.1 \
        loss.cr_scale=0.02 data.specaug.enabled=true        # transducer + CR-CTC (two views)

Takes the configuration of ``asr_recipes.bin.train`` (same overrides) and prints the phase
table of asr_recipes.tools.bench.step (see there for the phases). The step is the training
objective, CTC head and CR-CTC's second view included; comparing variants means running them
one after the other on the same machine (the same seeds give them the same batches). On a
shared machine, compare CPU times instead of wall-clock times (``clock=cpu threads=1``; see
asr_recipes.tools.bench.step).
"""

import time
from datetime import date

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.machine import cpu_name
from asr_recipes.models.build import build_transducer, count_parameters
from asr_recipes.tools.bench.step import table, time_steps
from asr_recipes.training.objective import LossConfig
from asr_recipes.training.trainer import make_optimizer, seed_everything

#: bench_step clock=...: wall (what training waits for) | cpu (this process's CPU time; with threads=1
#: the step's own computation, little affected by other jobs on the machine)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


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
    data = DataModule(resolved["data"], tokenizer, model.encoder.output_lengths)
    loss = LossConfig(**resolved["loss"])
    # CR-CTC: training asks the data for two SpecAugment views of every batch
    loader = data.train_dataloader(0, 0, 1, time_mask_ratio=loss.time_mask_ratio if loss.two_views else None)
    if loss.type != "pruned":
        raise SystemExit("bench_step: times the pruned loss's phases; loss.type must be pruned")
    if cfg.clock not in CLOCKS:
        raise SystemExit(f"bench_step: clock must be one of {sorted(CLOCKS)}, not {cfg.clock!r}")
    times, audio, peak = time_steps(model, optimizer, loader, loss, int(cfg.warmup), int(cfg.batches),
                              cfg.optim.grad_clip, CLOCKS[cfg.clock])
    print(f"### training step profile ({date.today()})\n")
    print(f"- {count_parameters(model) / 1e6:.2f} M parameters, vocabulary {tokenizer.vocab_size}, "
          f"data.max_duration {cfg.data.max_duration} s, data.num_workers {cfg.data.num_workers}, "
          f"loss.rnnt_type {loss.rnnt_type}, prune_range {loss.prune_range}, ctc_scale {loss.ctc_scale}, "
          f"cr_scale {loss.cr_scale}, data.specaug.enabled {cfg.data.specaug.enabled}")
    print(f"- {cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {cfg.clock} clock ({CLOCKS[cfg.clock].__name__})\n")
    print(table(times, audio, peak))


if __name__ == "__main__":
    main()

"""Benchmark: one transducer training-loss step, torchaudio's full loss vs our pruned loss.

    python -m asr_recipes.bin.bench_loss                 # shapes for the current device
    python -m asr_recipes.bin.bench_loss device=cuda iters=20

Prints the correctness checks and the table of asr_recipes.tools.bench.loss (see there for what
a step is); see conf/bench_loss.yaml for the settings.
"""

from datetime import date

import hydra
import torch
import torchaudio
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.machine import cpu_name
from asr_recipes.tools.bench.loss import Shape, bench_recursion, bench_shapes, check_correctness
from asr_recipes.training.distributed import resolve_device


@hydra.main(config_path=CONFIG_PATH, config_name="bench_loss", version_base="1.3")
def main(cfg: DictConfig) -> None:
    device = resolve_device(cfg.device)
    on_cuda = device.type == "cuda"
    shapes = [Shape(**s) for s in (cfg.shapes or (cfg.cuda_shapes if on_cuda else cfg.cpu_shapes))]
    name = torch.cuda.get_device_name(device) if on_cuda else cpu_name()
    threads = torch.get_num_threads()
    header = (f"date {date.today()} | device {name} | torch {torch.__version__} | torchaudio "
              f"{torchaudio.__version__} | cpu threads {threads} | "
              f"median of {cfg.iters} steps after {cfg.warmup} warm-up")
    print(header, flush=True)
    if cfg.check:
        for line in check_correctness(device):
            print(line, flush=True)
    amp_modes = [False, True] if on_cuda and cfg.amp else [False]
    bench_shapes(shapes, device, amp_modes, cfg.warmup, cfg.iters, cfg.skip_full)
    if cfg.recursion:
        for line in bench_recursion(device, **cfg.recursion, warmup=cfg.warmup, iters=cfg.iters):
            print(line, flush=True)


if __name__ == "__main__":
    main()

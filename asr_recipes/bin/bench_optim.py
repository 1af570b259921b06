"""Optimizer step time: ``python -m asr_recipes.bin.bench_optim [model=small] [device=cuda]``
(see conf/bench_optim.yaml).

Random gradients on the model's weights; each round runs every variant's step once, in turn:

* adamw: clip_grad_norm_ (grad_clip 5) + fused AdamW, what optim=adamw_eden trains with;
* scaled_adam: the norm measurement the trainer still does + ScaledAdam (it clips inside);
* scaled_adam_unbatched: the same, one weight tensor at a time instead of stacked by shape;
* scaled_adam_compiled: stacked, its elementwise part compiled (ScaledAdamConfig.compile).

Prints the median milliseconds per step and the ratio to adamw.
"""

import logging
import math
import statistics
import time
from typing import Callable, Dict

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from asr_recipes.bin import CONFIG_PATH
from asr_recipes.machine import cpu_name
from asr_recipes.models.build import build_transducer, count_parameters
from asr_recipes.training.distributed import resolve_device
from asr_recipes.training.scaled_adam import ScaledAdamConfig
from asr_recipes.training.trainer import OptimConfig, make_optimizer

log = logging.getLogger(__name__)


def _step_functions(model, names) -> Dict[str, Callable[[], None]]:
    params = list(model.parameters())
    steps = {}
    for name in names:
        if name == "adamw":
            opt = make_optimizer(model, OptimConfig())
            steps[name] = lambda opt=opt: (torch.nn.utils.clip_grad_norm_(params, 5.0), opt.step())
            continue
        if name not in ("scaled_adam", "scaled_adam_unbatched", "scaled_adam_compiled"):
            raise SystemExit(f"bench_optim: unknown variant {name!r}")
        settings = ScaledAdamConfig(compile=name == "scaled_adam_compiled")
        opt = make_optimizer(model, OptimConfig(name="scaled_adam", lr=0.045, grad_clip=None, scaled_adam=settings))
        opt.batch_by_shape = name != "scaled_adam_unbatched"
        steps[name] = lambda opt=opt: (torch.nn.utils.clip_grad_norm_(params, math.inf), opt.step())
    return steps


@hydra.main(config_path=CONFIG_PATH, config_name="bench_optim", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    model = build_transducer(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=int(cfg.vocab_size))
    model.to(device)
    params = list(model.parameters())
    grads = [1e-3 * torch.randn_like(p) for p in params]
    steps = _step_functions(model, list(cfg.variants))
    times: Dict[str, list] = {name: [] for name in steps}
    started = time.perf_counter()
    for round_index in range(int(cfg.warmup) + int(cfg.rounds)):
        for name, step in steps.items():
            for p, g in zip(params, grads):
                p.grad = g.clone()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= int(cfg.warmup):
                times[name].append(time.perf_counter() - t0)
        if round_index + 1 == int(cfg.warmup):
            log.info("warm-up (compilation included) took %.1f s", time.perf_counter() - started)
    base = statistics.median(times["adamw"]) if "adamw" in times else None
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    print(f"- {count_parameters(model) / 1e6:.2f} M parameters in {len(params)} tensors of "
          f"{len({(p.dtype, p.shape) for p in params})} shapes; {where}; torch {torch.__version__}\n")
    print("| optimizer step | median ms | x adamw |\n|---|---:|---:|")
    for name, values in times.items():
        ms = statistics.median(values) * 1e3
        ratio = f"{ms / (base * 1e3):.2f}" if base else "-"
        print(f"| {name} | {ms:.2f} | {ratio} |")


if __name__ == "__main__":
    main()

"""Process-group setup for torchrun (or a single plain process).

torchrun exports RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT; a plain ``python -m`` run has
none of them and trains as rank 0 of 1 without a process group. CUDA uses NCCL with one GPU
per local rank; CPU uses gloo (which is how the multi-process tests run on this machine).
A torchrun job of one process gets no process group either, unless ``process_group="always"``
asks for one: then NCCL (or gloo), DDP and the collectives run as they would on N devices,
which is how a single-GPU machine checks that path (asr_recipes.bin.gpu_check).
"""

import datetime
import gc
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    #: A process group was initialised although world_size is 1 (setup(process_group="always")).
    forced_group: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and TensorBoard events."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """A process group exists: DDP and the collectives are used."""
        return self.world_size > 1 or self.forced_group


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available else cpu; anything else as torch.device(name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
    return device


def setup(device: str = "auto", process_group: str = "auto") -> DistInfo:
    """Initialises the process group if launched by torchrun; picks the device for this rank.

    process_group: "auto" = only when torchrun started more than one process; "always" = also
    for one (needs a torchrun launch: it reads MASTER_ADDR/MASTER_PORT from there).
    """
    if process_group not in ("auto", "always"):
        raise ValueError(f"process_group must be 'auto' or 'always', got {process_group!r}")
    if process_group == "always" and "MASTER_ADDR" not in os.environ:
        raise ValueError("process_group=always needs a torchrun launch (torchrun --nproc_per_node N -m "
                         "asr_recipes.bin.train ...); a plain `python -m` run has no rendezvous")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":  # one GPU per local rank
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    forced = process_group == "always" and world_size == 1
    if (world_size > 1 or forced) and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=30)
        store = _attempt_store(world_size, timeout)
        if store is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
        log.info("rank %d/%d on %s (%s)", rank, world_size, dev, backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, forced_group=forced)


def _attempt_store(world_size: int, timeout: datetime.timedelta):
    """The elastic agent's shared TCPStore, with keys scoped to this restart attempt.

    torchrun (c10d rendezvous) lets workers reuse the agent's store, which outlives worker
    restarts. Without a per-attempt prefix, a restarted group can read the previous group's
    gloo/NCCL addresses and fail with "connection refused" (pytorch/pytorch#135712). None when
    not launched that way (plain env:// initialisation then).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                           is_master=False, timeout=timeout)
    return dist.PrefixStore(f"asr_recipes/attempt_{attempt}", client)


def cleanup() -> None:
    """Destroys the process group while the interpreter is still fully alive.

    Objects that hold the group (DDP's reducer, inside a trainer kept alive by reference cycles)
    are collected first: left to interpreter shutdown, the gloo group's worker threads can abort
    the process at exit ("terminate called without an active exception", cf. pytorch#179291),
    which torchrun reports as a failed worker after a successful run.
    """
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sums a tensor over ranks (no-op for one process)."""
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()

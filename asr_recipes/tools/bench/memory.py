"""Peak memory of a benchmark, read the way the device allows and labelled with what it counts.

    start_peak_memory(device)        # before the measured code: CUDA's peak counter restarts
    ...                              # the measured code
    peak = peak_memory(device)       # PeakMemory(bytes, what)

* CUDA: ``torch.cuda.max_memory_allocated`` since ``start_peak_memory``: the tensors torch's
  caching allocator handed out (weights, gradients, optimizer state, activations), not the
  allocator's cached-but-free blocks nor the CUDA context.
* CPU: the process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).
  The kernel keeps only one high-water mark per process, so it is the peak since the process
  started (model building and untimed steps included), and it counts everything resident in
  the main process: tensors, the Python interpreter and its modules, torch's libraries, and
  the data pipeline's main-process side (collated batches, the loader's queues). Data loader
  worker processes are other processes and are not in it.
"""

import resource
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PeakMemory:
    bytes: int
    what: str  # what the number counts, for a table's note


def start_peak_memory(device: torch.device) -> None:
    """Restart the peak counter where the device has one (CUDA); the CPU's RSS peak cannot be."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> PeakMemory:
    """The peak since start_peak_memory (CUDA) or since the process started (CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return PeakMemory(torch.cuda.max_memory_allocated(device),
                          "torch.cuda.max_memory_allocated over the timed steps (tensors only)")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes (1024 bytes), macOS bytes
    return PeakMemory(maxrss if sys.platform == "darwin" else maxrss * 1024,
                      "process peak RSS (ru_maxrss of the main process since it started: model, optimizer "
                      "state, activations, Python, torch and the data pipeline's main-process side; "
                      "not the data loader's worker processes)")

"""Out-of-memory pre-scan: try the most memory-hungry batches before training starts.

A dynamic sampler packs up to max_duration seconds per batch, so memory peaks on the batches
of the longest utterances (largest T, and T x U for the full loss) or with the most tokens.
Running forward + backward on such batches first turns a CUDA out-of-memory error, which
would otherwise strike hours into an epoch, into an immediate message with advice.
"""

import heapq
import logging
from typing import Callable, Dict, List

import torch
from lhotse import CutSet

from asr_recipes.data.dataset import AsrDataset
from asr_recipes.data.filters import cut_text

log = logging.getLogger(__name__)


def pessimistic_batches(cuts: CutSet, max_duration: float, tokenizer, keep: int = 256) -> Dict[str, CutSet]:
    """Batches packed to max_duration from (a) the longest cuts, (b) the cuts with most tokens.

    One pass over the manifest; only the ``keep`` top cuts of each kind are held in memory.
    """
    longest: List = []
    most_tokens: List = []
    for i, cut in enumerate(cuts):
        n_tokens = len(tokenizer.encode([cut_text(cut)])[0])
        for heap, key in ((longest, cut.duration), (most_tokens, n_tokens)):
            item = (key, i, cut)
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    batches = {}
    for name, heap in (("longest utterances", longest), ("most tokens", most_tokens)):
        batch, total = [], 0.0
        for _, _, cut in sorted(heap, key=lambda x: x[:2], reverse=True):
            if batch and total + cut.duration > max_duration:
                break
            batch.append(cut)
            total += cut.duration
        if batch:
            batches[name] = CutSet.from_cuts(batch)
    return batches


def oom_prescan(step_fn: Callable[[dict], None], cuts: CutSet, max_duration: float, tokenizer,
                device: torch.device) -> None:
    """Runs ``step_fn(batch)`` (forward + backward, no update) on the pessimistic batches.

    Raises RuntimeError with advice if one of them does not fit in device memory.
    """
    dataset = AsrDataset(tokenizer)
    for name, batch_cuts in pessimistic_batches(cuts, max_duration, tokenizer).items():
        batch = dataset[batch_cuts]
        seconds = sum(c.duration for c in batch_cuts)
        try:
            step_fn(batch)
        except torch.cuda.OutOfMemoryError as e:
            total = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else 0
            raise RuntimeError(
                f"out of memory on a batch of the {name} ({len(batch_cuts)} cuts, {seconds:.0f} s of audio, up to "
                f"{max(c.duration for c in batch_cuts):.1f} s each) on {device} ({total:.0f} GiB). Lower "
                f"data.max_duration (now {max_duration:g}; try {max_duration * 0.7:.0f}), lower "
                "data.filters.max_duration to drop the longest utterances, or use trainer.amp=fp16/bf16."
            ) from e
        log.info("OOM pre-scan: batch of the %s fits (%d cuts, %.0f s)", name, len(batch_cuts), seconds)
        if device.type == "cuda":
            log.info("OOM pre-scan: peak memory %.2f GiB", torch.cuda.max_memory_allocated(device) / 2**30)

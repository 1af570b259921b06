"""Decoding speed at fixed batch sizes: the search methods' RTF and utterances/s (part 4).

The decode stage batches by seconds of audio (``data.max_duration``); here the batch size is
a number of utterances, so batch size 1 (streaming-like, latency-bound) and 32+ (offline,
throughput-bound) can be compared. Timing is asr_recipes.decoding.runner.decode_part's:
a method's wall time is its own search time plus the time all methods share (loading
batches, running the encoder). Each batch size first decodes ``warmup_batches`` batches
untimed (CUDA kernel selection, allocator), then decodes batches until all are done or
``max_seconds`` have passed; rows say how many utterances that was.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicCutSampler
from torch.utils.data import DataLoader

from asr_recipes.data.dataset import AsrDataset
from asr_recipes.decoding.runner import decode_part, scoring_unit
from asr_recipes.decoding.search import SearchStrategy
from asr_recipes.scoring.stats import score


@dataclass(frozen=True)
class SpeedRow:
    batch_size: int
    method: str
    batches: int
    utterances: int
    audio_seconds: float
    wall_seconds: float
    rtf: float  # wall seconds / audio seconds
    utterances_per_second: float
    error_rate: float  # percent (WER, or CER for character tokenizers without word boundaries)
    metric: str
    complete: bool  # False: max_seconds stopped it before the last batch

    def to_dict(self) -> dict:
        return asdict(self)


_END = object()


class _Counted:
    """Yields batches, stopping after the first one that ends past ``deadline`` (time.monotonic());
    counts them and records whether every batch was yielded."""

    def __init__(self, batches: Iterable, deadline: float):
        self.batches, self.deadline, self.count, self.exhausted = batches, deadline, 0, False

    def __iter__(self) -> Iterator:
        it = iter(self.batches)
        batch = next(it, _END)
        while batch is not _END:
            self.count += 1
            yield batch
            if time.monotonic() > self.deadline:
                self.exhausted = next(it, _END) is _END  # loading a batch to know: not timed
                return
            batch = next(it, _END)
        self.exhausted = True


def batches_of(cuts: CutSet, tokenizer, batch_size: int, num_workers: int) -> DataLoader:
    """Test batches of exactly ``batch_size`` utterances (the last may be smaller), in manifest order."""
    sampler = DynamicCutSampler(cuts, max_cuts=batch_size, shuffle=False, drop_last=False)
    return DataLoader(AsrDataset(tokenizer), sampler=sampler, batch_size=None, num_workers=num_workers)


def decode_speed(model, tokenizer, cuts: CutSet, searches: Mapping[str, SearchStrategy], batch_sizes: Sequence[int],
                 device: torch.device, max_seconds: float, warmup_batches: int = 1,
                 num_workers: int = 1) -> list[SpeedRow]:
    """One row per (batch size, method); see the module docstring."""
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers, got {list(batch_sizes)!r}")
    keys = {m: m for m in searches}
    unit = scoring_unit(tokenizer)
    rows = []
    for batch_size in batch_sizes:
        if warmup_batches:
            warm = itertools.islice(batches_of(cuts, tokenizer, batch_size, 0), warmup_batches)
            decode_part(model, tokenizer, warm, searches, "warmup", keys, device)
        counted = _Counted(batches_of(cuts, tokenizer, batch_size, num_workers), time.monotonic() + max_seconds)
        results, speed = decode_part(model, tokenizer, counted, searches, "test", keys, device)
        for method in searches:
            d = speed[method].to_dict()
            stats = score(results[method].results, unit)
            rows.append(SpeedRow(batch_size, method, counted.count, d["num_utterances"], d["audio_seconds"],
                                 d["wall_seconds"], d["rtf"], d["utterances_per_second"], stats.error_rate,
                                 "CER" if unit == "char" else "WER", counted.exhausted))
    return rows


def speed_table(rows: Sequence[SpeedRow]) -> list[str]:
    """Markdown table of the rows."""
    from asr_recipes.tools.gpu_check.report import table

    return table(["batch size", "method", "batches", "utterances", "audio s", "wall s", "RTF", "utt/s", "error rate",
                  "all decoded"],
                 [[r.batch_size, r.method, r.batches, r.utterances, f"{r.audio_seconds:.1f}", f"{r.wall_seconds:.2f}",
                   f"{r.rtf:.4f}", f"{r.utterances_per_second:.1f}", f"{r.error_rate:.2f}% {r.metric}",
                   "yes" if r.complete else "no (time limit)"] for r in rows], "rlrrrrrrrl")

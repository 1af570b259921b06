"""Decode test sets with several search methods and write scoring and speed files.

For each test part, every batch is encoded once and searched by every method. Per
method and part, into ``<exp_dir>/<method>/``:

    recogs-/errs-/wer-summary-<part>-<key>.txt     asr_recipes.scoring (icefall layout)
    speed-<part>-<key>.json                       SpeedReport.to_dict() + model/machine info

``key`` = ``<weights>-<settings>``, e.g. ``epoch-10-avg-3-use-averaged-model-beam-4-max-sym-per-frame-1``
(streaming models add their chunk settings, e.g. ``-chunk-8-left-64-streaming``).
Speed: ``rtf`` = wall seconds / audio seconds and ``utterances_per_second``, where a
method's wall time is its own search time plus the time shared by all methods (loading
batches and running the encoder), so each method's numbers are what decoding with it
alone would cost. Real streaming runs the encoder chunk by chunk inside each method's
decoding, so there it counts as the method's own time.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from asr_recipes.atomic_files import write_atomic
from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.data.tokenizer import CharTokenizer, Tokenizer
from asr_recipes.decoding.search import SearchStrategy
from asr_recipes.decoding.settings import ChunkSettings
from asr_recipes.decoding.streaming import StreamingRecognizer, decode_streaming
from asr_recipes.scoring import ErrorStats, write_scoring_files

SPEED_PREFIX = "speed-"


def scoring_unit(tokenizer: Tokenizer) -> str:
    """"char" (CER) for a character tokenizer without word boundaries (Chinese), else "word"."""
    return "char" if isinstance(tokenizer, CharTokenizer) and not tokenizer.word_boundary else "word"


def to_units(text: str, unit: str) -> list[str]:
    """Words, or (char) characters with whitespace removed: what the scoring files list."""
    return text.split() if unit == "word" else list("".join(text.split()))


@dataclass
class SpeedReport:
    method: str
    part: str
    key: str
    num_utterances: int = 0
    audio_seconds: float = 0.0
    #: loading batches + encoder, shared by every method decoding the part
    shared_seconds: float = 0.0
    search_seconds: float = 0.0

    @property
    def wall_seconds(self) -> float:
        return self.shared_seconds + self.search_seconds

    def to_dict(self) -> dict:
        wall = self.wall_seconds
        return {**asdict(self), "wall_seconds": wall,
                "rtf": wall / self.audio_seconds if self.audio_seconds else float("nan"),
                "utterances_per_second": self.num_utterances / wall if wall else float("nan")}

    def summary(self) -> str:
        d = self.to_dict()
        return (f"%SPEED {self.part} {self.method} RTF {d['rtf']:.4f}, {d['utterances_per_second']:.1f} utt/s "
                f"({self.num_utterances} utterances, {self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s)")


def machine_info(device: torch.device) -> dict:
    """Where the decoding ran, for the results table."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"device": str(device), "device_name": name, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def decode_part(model, tokenizer: Tokenizer, batches: Iterable[Mapping[str, Any]],
                searches: Mapping[str, SearchStrategy], part: str, keys: Mapping[str, str],
                device: torch.device, chunk: ChunkSettings | None = None
                ) -> tuple[dict[str, list], dict[str, SpeedReport]]:
    """Run every search on every batch of one test part.

    Args:
        batches: AsrDataset batch dicts (features (N, T, F), feature_lens (N,) frames
            before subsampling, cut_ids, texts).
        searches: {method: strategy}; keys: {method: results-file key}.
        chunk: streaming models: chunked attention (simulated, or real chunk-by-chunk).
    Returns:
        ({method: [(cut id, ref units, hyp units)]}, {method: SpeedReport}).
    """
    unit = scoring_unit(tokenizer)
    results = {m: [] for m in searches}
    speed = {m: SpeedReport(m, part, keys[m]) for m in searches}
    real = chunk is not None and chunk.real
    recognizers = {m: StreamingRecognizer(model, s, chunk.chunk_size, chunk.left_context, device)
                   for m, s in searches.items()} if real else {}
    shared = 0.0
    started = time.perf_counter()
    for batch in batches:
        features = batch["features"].to(device)  # (N, T, F)
        feature_lens = batch["feature_lens"].to(device)  # (N,)
        if not real:
            encoder_out, encoder_lens = model.encode(
                features, feature_lens, *((chunk.chunk_size, chunk.left_context) if chunk else ()))  # (N, T', D), (N,)
        _sync(device)
        shared += time.perf_counter() - started
        refs = [to_units(t, unit) for t in batch["texts"]]
        audio = float(batch["feature_lens"].sum()) * FRAME_SHIFT
        for method, strategy in searches.items():
            t0 = time.perf_counter()
            if real:
                out = decode_streaming(recognizers[method], features, feature_lens)
            else:
                out = strategy.search(encoder_out, encoder_lens)
            _sync(device)
            texts = tokenizer.decode([r.tokens for r in out])
            speed[method].search_seconds += time.perf_counter() - t0
            speed[method].num_utterances += len(out)
            speed[method].audio_seconds += audio
            results[method] += [(cut_id, ref, to_units(hyp, unit))
                                for cut_id, ref, hyp in zip(batch["cut_ids"], refs, texts)]
        started = time.perf_counter()  # the next batch's loading counts as shared time
    for report in speed.values():
        report.shared_seconds = shared
    return results, speed


def write_part_results(exp_dir: str | os.PathLike, results: list, speed: SpeedReport, unit: str,
                       extra: Mapping[str, Any]) -> ErrorStats:
    """Scoring files and the speed json of one (method, part) into exp_dir/<method>/;
    ``extra`` (weights, model, machine info) goes into the json too."""
    out_dir = Path(exp_dir) / speed.method
    stats = write_scoring_files(out_dir, speed.part, speed.key, results, unit)
    record = {**speed.to_dict(), "unit": unit, **extra}
    write_atomic(out_dir / f"{SPEED_PREFIX}{speed.part}-{speed.key}.json", json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return stats




def decode_test_sets(exp_dir: str | os.PathLike, model, tokenizer: Tokenizer, loaders: Mapping[str, Iterable],
                     searches: Mapping[str, SearchStrategy], weights: str, extra: Mapping[str, Any],
                     device: torch.device, report=print, chunk: ChunkSettings | None = None
                     ) -> dict[tuple[str, str], ErrorStats]:
    """decode_part + write_part_results for every test part; ``report`` gets the %WER and
    %SPEED lines. The key of a method is ``<weights>-<its settings>[-<chunk settings>]``."""
    suffix = f"-{chunk.key()}" if chunk is not None else ""
    keys = {m: f"{weights}-{s.options.settings_key(s.uses_beam)}{suffix}" for m, s in searches.items()}
    unit = scoring_unit(tokenizer)
    out = {}
    for part, batches in loaders.items():
        results, speed = decode_part(model, tokenizer, batches, searches, part, keys, device, chunk)
        for method in searches:
            if not results[method]:
                raise ValueError(f"test part {part!r} yielded no utterances; check its cut manifest")
            stats = write_part_results(exp_dir, results[method], speed[method], unit,
                                       {"weights": weights, **extra})
            report(stats.summary(part, method))
            report(speed[method].summary())
            out[part, method] = stats
    return out

"""Decode test sets with several search methods and write scoring and speed files.

For each test part, every batch is encoded once and searched by every method. Per
method and part, into ``<exp_dir>/<method>/``:

    recogs-/errs-/wer-summary-<part>-<key>.txt     asr_recipes.scoring (icefall layout)
    ctm-<part>-<key>.ctm                          word times of the best hypotheses (asr_recipes.scoring.ctm;
                                                  seconds from the cut start, asr_recipes.decoding.word_times)
    nbest-<part>-<key>.txt                        with nbest > 1: the n best hypotheses per utterance (NBEST_HEADER)
    hotword-recall-<part>-<key>.txt               with hotwords: recall per phrase (asr_recipes.scoring.hotwords)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from asr_recipes.atomic_files import write_atomic
from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.data.tokenizer import CharTokenizer, Tokenizer
from asr_recipes.decoding.search import SearchStrategy
from asr_recipes.decoding.settings import ChunkSettings
from asr_recipes.decoding.streaming import StreamingRecognizer, decode_streaming
from asr_recipes.decoding.word_times import word_times
from asr_recipes.machine import cpu_name
from asr_recipes.scoring import ErrorStats, write_scoring_files
from asr_recipes.scoring.ctm import write_ctm
from asr_recipes.scoring.hotwords import Recall, hotword_recall

SPEED_PREFIX = "speed-"
#: columns of an n-best file (tab-separated, one row per hypothesis, rank 1 = best), the one
#: description of n-best scores (transcribe --nbest prints the same fields, NBEST_HEADER[2:]):
#: score = log_prob + hotword_bonus + lm_score, with log_prob the transducer's log-probability,
#: hotword_bonus that of the hotword phrases completed, lm_score the language model's share
#: (lm_scale * log P_LM - lodr_scale * log P_bigram; 0 without an LM). Ranks as the search
#: ranks: by score per symbol, score / (num_tokens + context size).
NBEST_HEADER = ("utterance", "rank", "score", "log_prob", "hotword_bonus", "lm_score", "num_tokens", "text")
_SCORES = NBEST_HEADER[2:6]


def nbest_fields(hyp, text: str) -> dict:
    """One hypothesis' NBEST_HEADER fields after utterance and rank (scores rounded to 4 decimals)."""
    values = (hyp.score, hyp.log_prob, hyp.hotword_bonus, hyp.lm_score)
    return {**{name: round(v, 4) for name, v in zip(_SCORES, values)}, "num_tokens": len(hyp.tokens), "text": text}


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
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class MethodOutput:
    """What one method produced on one part: (cut id, ref units, hyp units) for scoring,
    word times of the best hypothesis per cut, and its n-best list ((utterance, rank,
    nbest_fields) per NBEST_HEADER row) when the method's options ask for nbest > 1."""

    results: list = field(default_factory=list)
    words: dict = field(default_factory=dict)
    nbest: list = field(default_factory=list)


@torch.inference_mode()
def decode_part(model, tokenizer: Tokenizer, batches: Iterable[Mapping[str, Any]],
                searches: Mapping[str, SearchStrategy], part: str, keys: Mapping[str, str],
                device: torch.device, chunk: ChunkSettings | None = None
                ) -> tuple[dict[str, MethodOutput], dict[str, SpeedReport]]:
    """Run every search on every batch of one test part.

    Args:
        batches: AsrDataset batch dicts (features (N, T, F), feature_lens (N,) frames
            before subsampling, cut_ids, texts).
        searches: {method: strategy}; keys: {method: results-file key}.
        chunk: streaming models: chunked attention (simulated, or real chunk-by-chunk).
    Returns:
        ({method: MethodOutput}, {method: SpeedReport}).
    """
    unit = scoring_unit(tokenizer)
    outputs = {m: MethodOutput() for m in searches}
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
            collect(outputs[method], tokenizer, strategy.options.nbest, batch["cut_ids"], refs, texts, out, unit,
                    model.encoder.lookahead_frames)
        started = time.perf_counter()  # the next batch's loading counts as shared time
    for report in speed.values():
        report.shared_seconds = shared
    return outputs, speed


def collect(output: MethodOutput, tokenizer: Tokenizer, nbest: int, cut_ids: Sequence[str], refs: Sequence,
            texts: Sequence[str], decoded: Sequence, unit: str, lookahead_frames: int) -> None:
    """Add one batch's DecodingResults to ``output`` (word times with the model's
    encoder.lookahead_frames)."""
    for cut_id, ref, text, result in zip(cut_ids, refs, texts, decoded):
        output.results.append((cut_id, ref, to_units(text, unit)))
        words = word_times(tokenizer, result.tokens, result.timestamps, result.token_spans,
                           lookahead_frames=lookahead_frames)
        output.words[cut_id] = [(w.word, w.start, w.end) for w in words]
        if nbest > 1:
            hyps = result.hyps[:nbest]
            for rank, (hyp, hyp_text) in enumerate(zip(hyps, tokenizer.decode([h.tokens for h in hyps])), 1):
                output.nbest.append((cut_id, rank, nbest_fields(hyp, hyp_text)))


def format_nbest(rows: Sequence[tuple]) -> str:
    """The n-best file: a header line, then one tab-separated row per hypothesis, by
    utterance id and rank."""
    lines = ["\t".join(NBEST_HEADER) + "\n"]
    for utt, rank, fields in sorted(rows, key=lambda r: (r[0], r[1])):
        columns = [utt, str(rank), *(f"{fields[c]:.4f}" for c in _SCORES), str(fields["num_tokens"]), fields["text"]]
        lines.append("\t".join(columns) + "\n")
    return "".join(lines)


def write_part_results(exp_dir: str | os.PathLike, results: list, speed: SpeedReport, unit: str,
                       extra: Mapping[str, Any], output: MethodOutput | None = None,
                       recall: Recall | None = None) -> ErrorStats:
    """Scoring files and the speed json of one (method, part) into exp_dir/<method>/;
    ``extra`` (weights, model, machine info) goes into the json too. With ``output``: the
    CTM and (if any) n-best file; with ``recall``: the hotword recall file."""
    out_dir = Path(exp_dir) / speed.method
    stats = write_scoring_files(out_dir, speed.part, speed.key, results, unit)
    name = f"{speed.part}-{speed.key}"
    if output is not None:
        write_ctm(out_dir / f"ctm-{name}.ctm", output.words)
        if output.nbest:
            write_atomic(out_dir / f"nbest-{name}.txt", format_nbest(output.nbest))
    if recall is not None:
        write_atomic(out_dir / f"hotword-recall-{name}.txt", recall.format())
    record = {**speed.to_dict(), "unit": unit, **extra}
    write_atomic(out_dir / f"{SPEED_PREFIX}{speed.part}-{speed.key}.json", json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return stats


def decode_test_sets(exp_dir: str | os.PathLike, model, tokenizer: Tokenizer, loaders: Mapping[str, Iterable],
                     searches: Mapping[str, SearchStrategy], weights: str, extra: Mapping[str, Any],
                     device: torch.device, report=print, chunk: ChunkSettings | None = None,
                     hotword_phrases: Sequence[str] = ()) -> dict[tuple[str, str], ErrorStats]:
    """decode_part + write_part_results for every test part; ``report`` gets the %WER and
    %SPEED lines (and, for methods with hotwords, %HOTWORDS recall lines of the
    ``hotword_phrases`` spoken in a part; word-scored tokenizers only).
    The key of a method is ``<weights>-<its settings>[-<chunk settings>]``."""
    suffix = f"-{chunk.key()}" if chunk is not None else ""
    keys = {m: f"{weights}-{s.options.settings_key(s.uses_beam)}{suffix}" for m, s in searches.items()}
    unit = scoring_unit(tokenizer)
    out = {}
    for part, batches in loaders.items():
        outputs, speed = decode_part(model, tokenizer, batches, searches, part, keys, device, chunk)
        for method in searches:
            results = outputs[method].results
            if not results:
                raise ValueError(f"test part {part!r} yielded no utterances; check its cut manifest")
            biased = searches[method].options.hotwords  # recall of the methods that were given the phrases
            recall = hotword_recall(results, hotword_phrases) if biased and hotword_phrases and unit == "word" else None
            stats = write_part_results(exp_dir, results, speed[method], unit, {"weights": weights, **extra},
                                       outputs[method], recall if recall is not None and recall.occurrences else None)
            report(stats.summary(part, method))
            if recall is not None and recall.occurrences:
                report(recall.summary(part, method))
            report(speed[method].summary())
            out[part, method] = stats
    return out

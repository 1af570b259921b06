"""How late a streaming model emits words, and what each chunk costs.

Emission delay of a word = the time its last token could be emitted in streaming minus
the time the word ends in a reference alignment:

* emission: the chunk that emitted the token could run once the audio up to the end of its
  window had arrived (StreamingRecognizer.emission_time: chunk wait, the front end's
  look-ahead and the 25 ms fbank window included; compute time is reported separately);
* reference end: the forced alignment (Viterbi path, asr_recipes.rnnt.best_path) of the
  reference transcript through the full lattice of an offline, full-context model, with
  the project's word-time convention (decoding.word_times): the audio the front end gave
  the frame of the word's last token ends at 40 t_last + 40 ms + the offline encoder's
  look-ahead (Conformer: + 70 ms in all, Zipformer: + 170 ms).

Words are paired by a minimum-edit-distance alignment of reference and hypothesis words;
only correctly recognized words are timed (as in scoring.word_timing).

    aligned = forced_alignment(offline_model, features (T, F), tokens)       # frame per token
    run = stream_utterance(recognizer, features)                             # one stream alone
    delays = emission_delays(tokenizer, ref_tokens, aligned, run, recognizer, num_frames,
                             offline_model.encoder.lookahead_frames)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import kaldialign
import torch
from torch import Tensor

import asr_recipes.rnnt as k2
from asr_recipes.decoding.options import DecodingResult
from asr_recipes.decoding.streaming import StreamingRecognizer
from asr_recipes.decoding.word_times import each_token_is_a_word, frame_end_time, group_words
from asr_recipes.rnnt.viterbi import best_path

EPS = "\u2205"


@torch.inference_mode()
def forced_alignment(model, features: Tensor, tokens: Sequence[int]) -> list[int]:
    """Encoder frame of each reference token on the best (Viterbi) path of the full lattice.

    Args:
        model: an offline Transducer in eval mode (full context: the best reference).
        features: (T, F) fbank frames of one utterance; tokens: its U reference token ids.
    Returns:
        U frames, non-decreasing: token u is emitted on frame t where the path climbs from
        label position u to u+1 (regular RNN-T: several tokens may share a frame).
    """
    device = next(model.parameters()).device
    feats = features.to(device)[None]  # (1, T, F)
    enc, enc_lens = model.encode(feats, torch.tensor([feats.size(1)], device=device))  # (1, T', D)
    y = torch.tensor([list(tokens)], dtype=torch.int64, device=device)  # (1, U)
    sos_y = torch.nn.functional.pad(y, (1, 0), value=model.blank_id)  # (1, U+1)
    dec = model.decoder(sos_y)  # (1, U+1, Dd)
    logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (1, T', U+1, V)
    U, T = y.size(1), int(enc_lens[0])
    boundary = torch.tensor([[0, 0, U, T]], device=device)
    px, py = k2.get_rnnt_logprobs_joint(logits.float(), y, model.blank_id, boundary=boundary)
    score, on_path = best_path(px, py, boundary)
    if not torch.isfinite(score).all():
        raise ValueError(f"no alignment of {U} tokens in {T} encoder frames")
    path = on_path[0]  # (U+1, T'+1): nodes (s, t) the path visits
    return [int(path[s].nonzero()[0]) for s in range(1, U + 1)]  # first node at label position s


@dataclass
class StreamRun:
    """One utterance decoded alone, chunk by chunk: its result and each chunk's compute time."""

    result: DecodingResult
    chunk_seconds: list[float] = field(default_factory=list)


def stream_utterance(recognizer: StreamingRecognizer, features: Tensor) -> StreamRun:
    """Decode (T, F) features as one live stream (all frames available, one chunk per step),
    timing each chunk: the latency of a single user's stream, not of a batch."""
    stream = recognizer.new_stream()
    recognizer.accept_features(stream, features)
    recognizer.input_finished(stream)
    times = []
    while recognizer.is_ready(stream):
        started = time.perf_counter()
        recognizer.decode([stream])
        times.append(time.perf_counter() - started)
    return StreamRun(recognizer.result(stream), times)


def word_ends(tokenizer, tokens: Sequence[int], frames: Sequence[int]) -> list[tuple[str, int]]:
    """(word, frame of its last token) for each word of a token sequence."""
    pieces = [tokenizer.id_to_token(k) for k in tokens]
    return [(word, last) for word, _, last in group_words(pieces, frames, each_token_is_a_word(tokenizer))]


def emission_delays(tokenizer, ref_tokens: Sequence[int], ref_frames: Sequence[int], result: DecodingResult,
                    recognizer: StreamingRecognizer, num_frames: int, ref_lookahead_frames: int) -> list[float]:
    """Seconds from each correctly recognized word's reference end to its streaming emission.

    ref_frames: forced_alignment() of ref_tokens; result: the streaming decoding (token
    timestamps = encoder frames); num_frames: the utterance's fbank frames (its last chunk
    cannot wait for audio past the end); ref_lookahead_frames: the reference model's
    encoder.lookahead_frames (where its frames' audio ends)."""
    ref = word_ends(tokenizer, ref_tokens, ref_frames)
    hyp = word_ends(tokenizer, result.tokens, result.timestamps)
    delays, i, j = [], 0, 0
    for r, h in kaldialign.align([w for w, _ in ref], [w for w, _ in hyp], EPS):
        if r != EPS and h != EPS and r == h:
            ref_end = frame_end_time(ref[i][1], ref_lookahead_frames)
            delays.append(recognizer.emission_time(hyp[j][1], num_frames) - ref_end)
        i += r != EPS
        j += h != EPS
    return delays


@dataclass
class LatencySummary:
    """Per (chunk size, method): accuracy, compute and emission delay over a test set."""

    errors: int = 0
    ref_words: int = 0
    chunks: int = 0
    chunk_seconds: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    delays: list[float] = field(default_factory=list)

    def add(self, run: StreamRun, errors: int, ref_words: int, audio_seconds: float, delays: list[float]) -> None:
        self.errors += errors
        self.ref_words += ref_words
        self.chunk_seconds += run.chunk_seconds
        self.audio_seconds += audio_seconds
        self.delays += delays

    def row(self) -> dict:
        cs = sorted(self.chunk_seconds)
        ds = sorted(self.delays)
        return {
            "wer": 100.0 * self.errors / max(self.ref_words, 1),
            "chunk_ms_mean": 1000 * sum(cs) / max(len(cs), 1),
            "chunk_ms_max": 1000 * (cs[-1] if cs else 0.0),
            "rtf": sum(cs) / self.audio_seconds if self.audio_seconds else float("nan"),
            "delay_ms_mean": 1000 * sum(ds) / len(ds) if ds else float("nan"),
            "delay_ms_p90": 1000 * percentile(ds, 0.9) if ds else float("nan"),
            "timed_words": len(ds),
            "ref_words": self.ref_words,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank: the smallest value with at least q of
    the values at or below it)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q * len(sorted_values) - 1e-9))  # the tolerance: 0.9 * 10 is 9.000000000000002
    return sorted_values[min(rank, len(sorted_values)) - 1]

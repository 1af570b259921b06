"""Streaming recognition: many streams decoded chunk by chunk with one causal model.

    recognizer = StreamingRecognizer(model, search, chunk_size=8, left_context=64)
    stream = recognizer.new_stream()
    recognizer.accept_features(stream, feats)      # (T, 80) fbank frames, as they arrive
    ...; recognizer.input_finished(stream)        # after the last frames
    while streams := [s for s in all_streams if recognizer.is_ready(s)]:
        recognizer.decode(streams)                 # one chunk of each, as one batch
    recognizer.result(stream)                      # DecodingResult so far (partial or final)

A stream holds its feature frames not yet consumed, the encoder's states
(encoder.streaming_forward, models/encoder.py's contract) and the search's state
(SearchStrategy.advance), so streams may join, pause and finish at any time, and each
``decode`` call batches whichever streams are ready. The encoder reads the windows of
encoder.chunk_windows(chunk_size, last) (asr_recipes/chunk_windows.py; Conformer: 4 * chunk + 3
feature frames, one every 4 * chunk); the search continues each stream's hypotheses over
the new encoder frames, so greedy and beam searches are the offline ones. ``last`` says what
happens to a stream's last partial window: "pad" (default) decodes it padded; "full" decodes
full windows only, exactly as sherpa-onnx's OnlineRecognizer (clients append tail padding).

Timing: the chunk that emits a token at encoder frame f is chunk f // chunk_size; it
could run once the audio up to the end of its window had arrived: ``emission_time``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from asr_recipes.chunk_windows import PAD
from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.data.online_fbank import HOP, LEAD, WINDOW
from asr_recipes.decoding.ctc_align import with_token_spans
from asr_recipes.decoding.options import DecodingResult
from asr_recipes.decoding.search import SearchStrategy


@dataclass
class Stream:
    """One utterance being decoded: unconsumed frames, encoder caches, search state."""

    encoder_states: list[Tensor]
    search_state: Any
    #: feature frames received but not yet passed by (the next window starts at pending[0])
    pending: Tensor
    #: feature frames received in all, and encoder frames produced
    num_frames: int = 0
    encoder_frames: int = 0
    finished: bool = False
    chunks: int = 0
    #: seconds of compute spent on this stream's chunks (its share of each batched call)
    compute_seconds: list[float] = field(default_factory=list)
    #: CTC log-probs (T'_chunk, V) of each decoded chunk, kept when the search aligns its
    #: results with the CTC head (SearchStrategy.aligns_with_ctc)
    ctc_log_probs: list[Tensor] = field(default_factory=list)


class StreamingRecognizer:
    """Chunk-by-chunk decoding with a causal Transducer (model.encoder.causal) and a search.

    Args:
        model: Transducer in eval mode, on ``device``.
        search: a SearchStrategy built for ``model`` (its options apply per chunk).
        chunk_size: encoder frames per chunk (40 ms each); left_context: encoder frames of
            attention left context (the cache size).
        last: "pad" or "full", the policy for a stream's last partial window (chunk_windows.py).
    """

    def __init__(self, model, search: SearchStrategy, chunk_size: int, left_context: int,
                 device: torch.device | str = "cpu", last: str = PAD):
        if not getattr(model.encoder, "causal", False):
            raise ValueError("streaming decoding needs a streaming model (trained with model.causal=true); "
                             "this checkpoint's encoder looks ahead over the whole utterance")
        if chunk_size < 1 or left_context < 0:
            raise ValueError(f"need chunk_size >= 1 and left_context >= 0 encoder frames, got {chunk_size}, "
                             f"{left_context}")
        self.model = model
        self.search = search
        self.chunk_size = chunk_size
        self.left_context = left_context
        self.device = torch.device(device)
        self.windows = model.encoder.chunk_windows(chunk_size, last)
        self.window, self.shift = self.windows.window, self.windows.shift

    def new_stream(self) -> Stream:
        states = self.model.encoder.init_states(1, self.left_context, device=self.device)
        feature_dim = self.model.encoder.feature_dim
        return Stream(states, self.search.start(1)[0], torch.zeros(0, feature_dim))

    def accept_features(self, stream: Stream, frames: Tensor) -> None:
        """Append (T, F) fbank frames to the stream."""
        if stream.finished:
            raise ValueError("input_finished() was called for this stream: it takes no more frames")
        stream.pending = torch.cat([stream.pending, frames.to(stream.pending.dtype)])
        stream.num_frames += frames.size(0)

    def input_finished(self, stream: Stream) -> None:
        """No more frames: with last="pad", the last, shorter window may be decoded."""
        stream.finished = True

    def is_ready(self, stream: Stream) -> bool:
        """The stream's next window can be decoded (ChunkWindows.ready)."""
        return self.windows.ready(stream.pending.size(0), stream.finished)

    def is_done(self, stream: Stream) -> bool:
        return stream.finished and not self.is_ready(stream)

    @torch.inference_mode()
    def decode(self, streams: Sequence[Stream]) -> None:
        """Decode one chunk of each stream (all must be ready), as one batch."""
        if not streams:
            return
        if not all(self.is_ready(s) for s in streams):
            raise ValueError("decode() got a stream without a full window; check is_ready() first")
        started = time.perf_counter()
        windows = [s.pending[: self.window] for s in streams]
        lens = torch.tensor([w.size(0) for w in windows])  # (N,)
        x = torch.nn.utils.rnn.pad_sequence(windows, batch_first=True)  # (N, W, F)
        if x.size(1) < self.window:  # every stream's last window is short: pad to the model's shape
            x = torch.nn.functional.pad(x, (0, 0, 0, self.window - x.size(1)))
        encoder = self.model.encoder
        states = encoder.stack_states([s.encoder_states for s in streams])
        out, out_lens, new_states = encoder.streaming_forward(
            x.to(self.device), lens.to(self.device), states)  # (N, chunk, D), (N,)
        self.search.advance([s.search_state for s in streams], out, out_lens)
        if self.search.aligns_with_ctc:
            ctc = self.model.ctc_log_probs(out).cpu()  # (N, chunk, V)
            for n, (s, n_out) in enumerate(zip(streams, out_lens.tolist())):
                s.ctc_log_probs.append(ctc[n, :n_out])
        per_stream = (time.perf_counter() - started) / len(streams)
        for s, st, n_out in zip(streams, encoder.unstack_states(new_states), out_lens.tolist()):
            s.encoder_states = st
            s.pending = s.pending[self.shift :]
            s.encoder_frames += n_out
            s.chunks += 1
            s.compute_seconds.append(per_stream)

    def result(self, stream: Stream) -> DecodingResult:
        """The stream's result so far. Once the stream is done, with token_spans when the
        search aligns with the CTC head (partial results skip the alignment: it would cost
        O(frames so far) again on every call)."""
        result = self.search.results([stream.search_state])[0]
        if not (self.search.aligns_with_ctc and stream.ctc_log_probs and self.is_done(stream)):
            return result
        log_probs = torch.cat(stream.ctc_log_probs)  # (T', V)
        return with_token_spans([result], log_probs[None], torch.tensor([log_probs.size(0)]),
                                self.search.blank_id)[0]

    def emission_time(self, encoder_frame: int, num_frames: int | None = None) -> float:
        """Seconds of audio that had to arrive before the chunk emitting a token at
        ``encoder_frame`` could run: the end of that chunk's window (at most the end of the
        stream's ``num_frames`` feature frames, for the last chunk)."""
        k = encoder_frame // self.chunk_size
        last_frame = k * self.shift + self.window - 1  # last feature frame of the window
        if num_frames is not None:
            last_frame = min(last_frame, num_frames - 1)
        return (last_frame * HOP - LEAD + WINDOW) / SAMPLE_RATE  # where that frame's 25 ms window ends


def decode_streaming(recognizer: StreamingRecognizer, features: Tensor, feature_lens: Tensor) -> list[DecodingResult]:
    """Whole utterances through the streaming path: every utterance becomes a stream with all
    its frames, and ready streams are decoded one chunk at a time until all are done.
    features (N, T, F), feature_lens (N,) -> N results (as decode() gives offline)."""
    streams = []
    for feats, T in zip(features, feature_lens.tolist()):
        s = recognizer.new_stream()
        recognizer.accept_features(s, feats[:T].cpu())
        recognizer.input_finished(s)
        streams.append(s)
    while ready := [s for s in streams if recognizer.is_ready(s)]:
        recognizer.decode(ready)
    return [recognizer.result(s) for s in streams]

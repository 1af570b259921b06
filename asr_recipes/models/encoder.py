"""The encoder contract: what the Transducer, decoding, streaming, export and training ask of
an encoder, so that another encoder (Conformer, Zipformer, ...) plugs in without touching them.

Offline, every encoder:

    feature_dim, output_dim, causal          attributes: F in, D out, streaming-capable
    forward(x (N, T, F), x_lens (N,), chunk_size=0, left_context=-1)
        -> (out (N, T', D), out_lens (N,) int64)
        Frames t >= x_lens[n] are padding; out_lens = output_lengths(x_lens); frames
        t' >= out_lens[n] are padding. chunk_size > 0 (causal encoders only): attention limited
        to chunks of that many encoder frames plus left_context frames before each (-1: all),
        i.e. simulated streaming with the same numbers as streaming_forward.
    output_lengths(num_frames) -> T'          the front end's length formula, on an int or an
        int tensor (Conformer: ((T - 1) // 2 - 1) // 2; Zipformer: ((T - 7) // 2 + 1) // 2)
    lookahead_frames                          feature frames the front end reads past an encoder
        frame's own 4: frame t' covers feature frames 4t' .. 4t' + 3 + lookahead_frames
        (Conformer 3: 4t' .. 4t' + 6; Zipformer 13: 4t' .. 4t' + 16). Word times end a word
        that much audio after its last frame (asr_recipes.decoding.word_times).
    skips_modules_in_training                 True when some training steps leave parameters
        without a gradient (the Zipformer skips layers and modules at random): distributed
        training then needs DistributedDataParallel(find_unused_parameters=True)

Training steps call the Transducer's set_batch_count(count), which reaches every schedule
inside the model (the Zipformer's; models/zipformer/schedule.py); other encoders have none.

Streaming (causal encoders), one chunk of chunk_size encoder frames per call:

    chunk_multiple                            the chunk sizes the encoder takes (in forward's
        chunk mask and in streaming) are the multiples of this (Conformer 1, Zipformer 4);
        check_chunk_size(chunk_size) raises ValueError for any other

    chunk_window(chunk_size) -> (window, shift)   feature frames a chunk reads and frames
        between chunk starts (window - shift: the front end's look-ahead; Conformer
        4 * chunk + 3, Zipformer 4 * chunk + 13)
    init_states(batch_size, left_context, device=None, dtype=float32) -> list[Tensor]
    streaming_forward(window (N, W, F), lens (N,), states) -> (out (N, chunk, D), out_lens (N,), new_states)
        W = window frames; only a stream's last window may be shorter (lens[n] < W)
    stack_states(per-stream states: list of lists) -> states of the batch
    unstack_states(states) -> list of per-stream states (each with batch size 1)

The state tensors are the encoder's own (documented in its init_states); callers only carry
them from one call to the next and stack/unstack them. chunk_windows(chunk_size, last) gives the
ChunkWindows (asr_recipes/chunk_windows.py) every chunk loop iterates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from asr_recipes.chunk_windows import ChunkWindows


class Encoder(nn.Module, ABC):
    """Base class of encoders (see the module docstring for the contract)."""

    feature_dim: int
    output_dim: int
    causal: bool
    lookahead_frames: int
    chunk_multiple: int = 1
    skips_modules_in_training: bool = False

    @abstractmethod
    def forward(self, x: Tensor, x_lens: Tensor, chunk_size: int = 0,
                left_context: int = -1) -> tuple[Tensor, Tensor]:
        ...

    @abstractmethod
    def output_lengths(self, num_frames):
        """Encoder frames T' from T feature frames (an int or an integer tensor)."""

    def min_input_frames(self) -> int:
        """The fewest feature frames that give one encoder frame."""
        frames = 1
        while self.output_lengths(frames) < 1:
            frames += 1
        return frames

    # ------------------------------------------------------------------ streaming
    def _not_streaming(self) -> ValueError:
        return ValueError("streaming needs a causal encoder (model.causal=true); this one looks ahead over the "
                          "whole utterance")

    def check_chunk_size(self, chunk_size: int) -> None:
        """ValueError unless chunk_size (encoder frames) is one this causal encoder can take."""
        if not self.causal:
            raise self._not_streaming()
        if chunk_size < 1 or chunk_size % self.chunk_multiple:
            raise ValueError(f"chunk_size={chunk_size}: this encoder takes chunks of a multiple of "
                             f"{self.chunk_multiple} encoder frames ({40 * self.chunk_multiple} ms)")

    def chunk_window(self, chunk_size: int) -> tuple[int, int]:
        raise self._not_streaming()

    def chunk_windows(self, chunk_size: int, last: str = "pad") -> ChunkWindows:
        """The windows of chunk_size encoder frames, and the policy for a stream's last partial
        window ("pad": decode it padded; "full": full windows only, as sherpa-onnx)."""
        window, shift = self.chunk_window(chunk_size)
        return ChunkWindows(window, shift, self.min_input_frames(), last)

    def init_states(self, batch_size: int, left_context: int, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> list[Tensor]:
        raise self._not_streaming()

    def streaming_forward(self, x: Tensor, x_lens: Tensor,
                          states: list[Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        raise self._not_streaming()

    def stack_states(self, states: list[list[Tensor]]) -> list[Tensor]:
        raise self._not_streaming()

    def unstack_states(self, states: list[Tensor]) -> list[list[Tensor]]:
        raise self._not_streaming()

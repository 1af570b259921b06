"""Fbank frames of audio that arrives piece by piece (live input, streaming transcription).

Kaldi-style framing without edge snipping (lhotse's Fbank, asr_recipes.data.features):
frame i covers samples [160 i - 120, 160 i + 280), 25 ms windows every 10 ms, the
first and last windows completed by reflecting the signal at its ends. A frame is final
once its whole window has arrived. ``OnlineFbank`` hands out each frame once, as soon as
it is final, and the frames it gives are exactly those of ``fbank_extractor()`` on the
whole recording, up to float32 rounding (tests/data/test_online_fbank.py): it extracts from a sample range that
starts one hop before the first missing frame, so that range's framing lines up with the
whole signal's, and keeps only frames that do not depend on the range's start or end.
"""

from __future__ import annotations

import numpy as np
import torch

from asr_recipes.constants import FRAME_LENGTH, FRAME_SHIFT, SAMPLE_RATE
from asr_recipes.data.features import fbank_extractor

HOP = round(FRAME_SHIFT * SAMPLE_RATE)  # 160 samples
WINDOW = round(FRAME_LENGTH * SAMPLE_RATE)  # 400 samples
#: samples from a frame's window start to its centre hop start: frame i starts at HOP*i - LEAD
LEAD = (WINDOW - HOP) // 2  # 120


class OnlineFbank:
    """accept_waveform(samples) / input_finished() in; frames() out, each frame once.

    Samples are float32 mono at SAMPLE_RATE, in [-1, 1] like lhotse's loaders give them.
    """

    def __init__(self):
        self._extractor = fbank_extractor()
        self._samples = np.zeros(0, dtype=np.float32)
        self._offset = 0  # global index of self._samples[0]
        self._next = 0  # next frame to hand out
        self._received = 0  # samples received so far
        self.finished = False

    @property
    def num_samples(self) -> int:
        return self._received

    def accept_waveform(self, samples: np.ndarray) -> None:
        if self.finished:
            raise ValueError("input_finished() was called: no more samples for this stream")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._samples = np.concatenate([self._samples, samples])
        self._received += samples.size

    def input_finished(self) -> None:
        self.finished = True

    def _final_count(self) -> int:
        """Frames of the signal so far that are final (all of them once input is finished)."""
        if self.finished:
            return (self._received + HOP // 2) // HOP  # lhotse's count: round(duration / shift)
        return max(0, (self._received - (WINDOW - LEAD)) // HOP + 1)

    def frames(self) -> torch.Tensor:
        """(T_new, 80) float32: the frames that became final since the last call."""
        end = self._final_count()
        if end <= self._next:
            return torch.zeros(0, self._extractor.feature_dim(SAMPLE_RATE))
        # Extract from one hop before the first new frame (or from the very start), so the
        # range's frame j is the signal's frame first + j, with a reflected frame 0 we skip.
        skip = 0 if self._next == 0 else 1
        start = (self._next - skip) * HOP
        feats = self._extractor.extract(self._samples[start - self._offset :], SAMPLE_RATE)  # (T_range, 80)
        new = feats[skip : skip + end - self._next]  # (end - next, 80)
        self._next = end
        # keep only what later frames can need: from one hop before the next frame
        keep_from = max(0, (self._next - 1) * HOP)
        self._samples = self._samples[keep_from - self._offset :]
        self._offset = keep_from
        return torch.from_numpy(np.ascontiguousarray(new))

"""Where speech starts in a batch of log-mel features, for streaming training.

A streaming transducer trained with dynamic chunks learns whatever alignment its longest
training chunks allow. On a corpus whose sentences start with a few frequent words, that
includes emitting the first word on the utterance's first frames, before it is spoken,
from the look-ahead inside a long chunk (or the full context of full-context batches) and
the decoder's start-of-sentence prior. Decoded with short chunks the model cannot see that
far, guesses the first word and rarely recovers: the errors of a short-chunk decode then
sit on the first word. Making the frames before the speech onset blank-only removes that
alignment (trainer.chunk_training.speech_onset_rise; asr_recipes.rnnt.logprobs.forbid_early_symbols).

The onset is found from the features themselves (no alignments needed): the first feature
frame from which ``run`` frames in a row have a mean log-mel energy ``rise`` nats above the
utterance's floor, the mean of its first ``floor_frames`` frames (leading silence or noise).
"""

from __future__ import annotations

import torch
from torch import Tensor


def speech_onset_frames(features: Tensor, feature_lens: Tensor, rise: float, floor_frames: int = 4,
                        run: int = 2) -> Tensor:
    """features (N, T, F) log-mel, frames >= feature_lens (N,) padding -> (N,) int64 feature
    frame where speech starts; 0 where no onset is found (no frame rises enough, or the
    utterance is too short to estimate a floor), so nothing is constrained there."""
    N, T, _ = features.shape
    energy = features.float().mean(dim=-1)  # (N, T)
    floor = energy[:, :floor_frames].mean(dim=1, keepdim=True)  # (N, 1)
    frames = torch.arange(T, device=features.device).unsqueeze(0)  # (1, T)
    loud = (energy > floor + rise) & (frames < feature_lens.unsqueeze(1))  # (N, T)
    for shift in range(1, run):  # loud[t] = frames t .. t+run-1 all loud
        loud[:, :-shift] &= loud[:, shift:].clone()
        loud[:, T - shift:] = False
    first = torch.where(loud, frames.expand(N, T), torch.full_like(loud, T, dtype=torch.long)).min(dim=1).values
    found = (first < T) & (feature_lens > floor_frames)
    return torch.where(found, first, torch.zeros_like(first))


def symbol_start_frames(encoder, features: Tensor, feature_lens: Tensor, rise: float) -> Tensor:
    """(N,) int64 first encoder frame on which each utterance may emit a symbol: the frame
    before the first one whose input window reaches the speech onset (one frame early rather
    than late: the constraint must never forbid a frame that hears the word)."""
    onset = speech_onset_frames(features, feature_lens, rise)
    return (encoder.output_lengths(onset) - 1).clamp(min=0)

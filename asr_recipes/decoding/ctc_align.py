"""Token spans from the CTC head: force-align a hypothesis (of any search) to the frames.

A transducer emits a word's tokens when it is sure of them, often before the word is over
(asr_recipes.decoding.word_times). A CTC head trained next to it gives each token a run of
frames in the most probable CTC alignment of the hypothesis (Viterbi, blanks between and
around the runs): ``Hypothesis.token_spans`` = (first frame, last frame) per token, from
which word_times takes each word's start (first frame of its first token) and end (last
frame of its last token, plus the frame's 40 ms and the front end's look-ahead).

torchaudio.functional.forced_align computes the alignment (C++, one utterance per call: it
takes batch size 1). A call costs O(T' x tokens) on the CPU: for 8 utterances of 10 s (249
encoder frames, 60 tokens each) 3.5 ms, against 190 ms of greedy and 330 ms of modified beam
search with the small model (one run on a busy 2-core CPU), so no batched alignment of our
own is needed. Only the best hypothesis of each result is aligned (word times read it alone).

Whether results get spans is DecodingOptions.timestamps ("auto": every search's, when the
model has a CTC head; "ctc": required; "search": none); SearchStrategy.search and
StreamingRecognizer.result apply it. A hypothesis that cannot be aligned (CTC needs T' >=
tokens + adjacent repeats; a transducer may emit more) keeps no spans, and its word times
come from the search's frames.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torchaudio
from torch import Tensor

from asr_recipes.decoding.options import DecodingResult

Span = tuple[int, int]


def frames_needed(tokens: Sequence[int]) -> int:
    """Fewest frames a CTC alignment of ``tokens`` takes: one per token, plus a blank
    between two equal neighbours."""
    return len(tokens) + sum(a == b for a, b in zip(tokens, tokens[1:]))


def token_spans(log_probs: Tensor, tokens: Sequence[int], blank: int = 0) -> list[Span] | None:
    """(first, last) frame of each token's run in the Viterbi CTC alignment of ``tokens``.

    Args:
        log_probs: (T', V) CTC log-probabilities of one utterance's valid frames.
        tokens: label ids (no blank), e.g. a hypothesis' tokens.
    Returns:
        One (first, last) pair per token (0-based frames, first <= last, in order), or None
        when the tokens need more than T' frames.
    """
    if not tokens:
        return []
    if frames_needed(tokens) > log_probs.size(0):
        return None
    targets = torch.tensor([list(tokens)], dtype=torch.int32)  # (1, U)
    path, _ = torchaudio.functional.forced_align(log_probs[None].float().cpu(), targets, blank=blank)  # (1, T')
    path = path[0].tolist()
    spans: list[list[int]] = []
    for t, symbol in enumerate(path):
        if symbol == blank:
            continue
        if t > 0 and path[t - 1] == symbol:  # the run goes on
            spans[-1][1] = t
        else:
            spans.append([t, t])
    if len(spans) != len(tokens):
        raise RuntimeError(f"forced alignment gave {len(spans)} token runs for {len(tokens)} tokens")
    return [(a, b) for a, b in spans]


def with_token_spans(results: Sequence[DecodingResult], log_probs: Tensor, lens: Tensor,
                     blank: int = 0) -> list[DecodingResult]:
    """``results`` with their best hypothesis' token_spans from the alignment of its tokens
    to its utterance's CTC log-probs (N, T', V) over lens (N,) valid frames (left without
    spans when they do not fit)."""
    log_probs = log_probs.detach().float().cpu()
    out = []
    for n, (result, T) in enumerate(zip(results, lens.tolist())):
        spans = token_spans(log_probs[n, :T], result.hyps[0].tokens, blank) if result.hyps else None
        if spans is None:
            out.append(result)
        else:
            best = replace(result.hyps[0], token_spans=tuple(spans))
            out.append(DecodingResult((best, *result.hyps[1:])))
    return out

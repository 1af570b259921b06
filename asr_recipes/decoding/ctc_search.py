"""CTC searches: the model's CTC head read frame by frame instead of the joiner.

Both are SearchStrategy subclasses (asr_recipes.decoding.search), so they run offline,
on simulated streaming and chunk by chunk through StreamingRecognizer alike: a stream's
state carries what the next frame needs (the greedy search's previous frame symbol, the
prefix beam's per-prefix probabilities).

CTC topology: a frame-level path of symbols in [0, V) reads as a label sequence by merging
runs of one symbol and dropping blanks. ``<unk>`` acts as a second blank (never output,
and it separates two runs of one token, as blank does), matching the transducer searches'
convention that neither is ever emitted (asr_recipes.decoding.options).

    ctc_greedy_search       the most probable symbol per frame, collapsed. score = log-prob
                            of that path; timestamps = the first frame of each token's run.
    ctc_prefix_beam_search  keeps the ``beam`` most probable label prefixes, each with the
                            total probability of the paths that read as it, split into paths
                            ending in blank/unk and paths ending in its last token (Graves
                            2012, Hannun et al. 2014). Per frame only the ``beam`` most
                            probable tokens extend a prefix. score = log P(label sequence)
                            summed over its alignments (exact while nothing is pruned), and
                            hypotheses are ranked by it (no length normalisation: it is the
                            probability of a whole transcript). Timestamps: the frame each
                            token was appended on, along the larger contribution where two
                            extensions merge (for alignment-exact times use timestamps=ctc,
                            asr_recipes.decoding.ctc_align).

Options: blank_penalty is subtracted from the blank log-probability before renormalising
(as from the logit: log-softmax is shift-invariant); max_sym_per_utt caps the tokens of a
hypothesis; max_sym_per_frame does not apply (CTC emits at most one token per frame);
hotwords are not supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.search import SearchStrategy

Tokens = tuple[int, ...]
NEG_INF = -math.inf


def log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)), -inf allowed on either side."""
    if a < b:
        a, b = b, a
    return a if b == NEG_INF else a + math.log1p(math.exp(b - a))


class CtcFrames:
    """Mixin of the CTC searches (before SearchStrategy in their bases; not a SearchStrategy
    itself, which would register it as a method): the head's log-probabilities of encoder
    frames, and advance() over them."""

    def __init__(self, model, options):
        super().__init__(model, options)
        if getattr(model, "ctc_head", None) is None:
            raise ValueError(f"{self.name} reads a CTC head, and this model has none (trained without "
                             "model.ctc_head=true); use greedy_search or modified_beam_search")

    def frame_log_probs(self, encoder_out: Tensor) -> Tensor:
        """(N, T', D) encoder frames -> (N, T', V) float32 CTC log-probabilities, with
        blank_penalty applied."""
        log_probs = self.model.ctc_log_probs(encoder_out)  # (N, T', V)
        if self.options.blank_penalty:
            log_probs = log_probs.clone()
            log_probs[..., self.blank_id] -= self.options.blank_penalty
            log_probs = log_probs.log_softmax(dim=-1)
        return log_probs

    @torch.inference_mode()
    def advance(self, streams: Sequence, encoder_out: Tensor, encoder_lens: Tensor) -> None:
        self.advance_log_probs(streams, self.frame_log_probs(encoder_out), encoder_lens)

    def advance_log_probs(self, streams: Sequence, log_probs: Tensor, lens: Tensor) -> None:
        """advance() on given CTC log-probabilities (N, T', V) of the streams' next frames
        (frames t >= lens[n] are padding; blank_penalty is not applied here)."""
        raise NotImplementedError


@dataclass
class CtcGreedyStream:
    tokens: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    score: float = 0.0
    frames: int = 0
    #: the best symbol of the last frame seen (a run continuing into the next chunk is one token)
    previous: int | None = None


class CtcGreedySearch(CtcFrames, SearchStrategy):
    name = "ctc_greedy_search"

    def start(self, num_streams: int) -> list[CtcGreedyStream]:
        return [CtcGreedyStream() for _ in range(num_streams)]

    def advance_log_probs(self, streams: Sequence[CtcGreedyStream], log_probs: Tensor, lens: Tensor) -> None:
        best_lp, best = log_probs.max(dim=-1)  # (N, T') each
        best_lp, best = best_lp.double().cpu().numpy(), best.cpu().numpy()
        silent = np.array(sorted(self.silent))
        cap = self.options.utterance_cap
        for n, (s, T) in enumerate(zip(streams, lens.tolist())):
            if T == 0:
                continue
            symbols = best[n, :T]  # (T,)
            before = np.concatenate([[-1 if s.previous is None else s.previous], symbols[:-1]])  # (T,)
            starts = np.nonzero((symbols != before) & ~np.isin(symbols, silent))[0]  # first frames of token runs
            room = max(0, int(min(cap, len(s.tokens) + len(starts))) - len(s.tokens))
            s.tokens += symbols[starts[:room]].tolist()
            s.timestamps += (s.frames + starts[:room]).tolist()
            s.score += float(best_lp[n, :T].sum())
            s.previous = int(symbols[-1])
            s.frames += T

    def results(self, streams: Sequence[CtcGreedyStream]) -> list[DecodingResult]:
        return [DecodingResult((Hypothesis(tuple(s.tokens), s.score, tuple(s.timestamps)),)) for s in streams]


@dataclass
class Prefix:
    """Log-probabilities of the paths so far that read as one label prefix: those ending in
    blank or <unk>, and those ending in the prefix's last token; plus its token frames."""

    blank: float = NEG_INF
    token: float = NEG_INF
    timestamps: tuple[int, ...] = ()

    @property
    def total(self) -> float:
        return log_add(self.blank, self.token)


@dataclass
class PrefixBeamStream:
    prefixes: dict[Tokens, Prefix] = field(default_factory=lambda: {(): Prefix(blank=0.0)})
    frames: int = 0


def _add(prefixes: dict[Tokens, Prefix], y: Tokens, score: float, timestamps: tuple[int, ...],
         ends_in_token: bool, best: dict[Tokens, float]) -> None:
    """Add the paths of log-probability ``score`` to prefix ``y``; its timestamps follow the
    largest single contribution (``best`` tracks them)."""
    if score == NEG_INF:
        return
    p = prefixes.get(y)
    if p is None:
        p = prefixes[y] = Prefix(timestamps=timestamps)
        best[y] = score
    elif score > best[y]:
        p.timestamps, best[y] = timestamps, score
    if ends_in_token:
        p.token = log_add(p.token, score)
    else:
        p.blank = log_add(p.blank, score)


class CtcPrefixBeamSearch(CtcFrames, SearchStrategy):
    name = "ctc_prefix_beam_search"
    uses_beam = True

    def start(self, num_streams: int) -> list[PrefixBeamStream]:
        return [PrefixBeamStream() for _ in range(num_streams)]

    def results(self, streams: Sequence[PrefixBeamStream]) -> list[DecodingResult]:
        out = []
        for s in streams:
            hyps = [Hypothesis(y, p.total, p.timestamps) for y, p in s.prefixes.items()]
            out.append(DecodingResult(tuple(sorted(hyps, key=lambda h: (-h.score, h.tokens)))))
        return out

    def advance_log_probs(self, streams: Sequence[PrefixBeamStream], log_probs: Tensor, lens: Tensor) -> None:
        beam, cap = self.options.beam, self.options.utterance_cap
        silent = sorted(self.silent)
        lp = log_probs.double().cpu()  # (N, T', V)
        # the tokens that may extend a prefix on each frame: the `beam` most probable non-silent ones
        masked = lp.clone()
        masked[..., silent] = NEG_INF
        k = min(beam, lp.size(-1) - len(silent))
        top = masked.topk(k, dim=-1).indices  # (N, T', k)
        silent_lp = torch.logsumexp(lp[..., silent], dim=-1).tolist()  # (N, T'): blank or <unk>
        top, lp = top.tolist(), lp.tolist()  # Python floats: the loop below is scalar work
        for n, (s, T) in enumerate(zip(streams, lens.tolist())):
            for t in range(T):
                frame = lp[n][t]
                new: dict[Tokens, Prefix] = {}
                best: dict[Tokens, float] = {}
                for y, p in s.prefixes.items():
                    total = p.total
                    _add(new, y, total + silent_lp[n][t], p.timestamps, False, best)
                    last = y[-1] if y else None
                    if last is not None:  # the last token's run goes on
                        _add(new, y, p.token + frame[last], p.timestamps, True, best)
                    if len(y) >= cap:
                        continue
                    stamps = p.timestamps + (s.frames + t,)
                    for token in top[n][t]:
                        # a repeated token needs a blank between its two runs
                        before = p.blank if token == last else total
                        _add(new, y + (token,), before + frame[token], stamps, True, best)
                kept = sorted(new.items(), key=lambda e: (-e[1].total, e[0]))[:beam]
                s.prefixes = dict(kept)
            s.frames += T

"""Modified beam search, batched over streams, with up to max_sym_per_frame symbols per
frame.

With max_sym_per_frame = 1 this is the usual "modified" beam search for transducers
(one symbol per frame at most; hypotheses with equal token sequences merged by log-add),
as in icefall and sherpa-onnx. Character tokens at 40 ms per encoder frame often need
several symbols per frame, so each frame is expanded in up to max_sym_per_frame sub-steps:

    open   = the hypotheses entering frame t        (they may still emit on t)
    closed = {}                                      (done with t)
    repeat max_sym_per_frame times:
        for every open hypothesis y and symbol k:  candidate (y, k), score(y) + log p(k | t, y)
        keep the `beam` best candidates of each stream
          (y, blank or unk) -> closed: y ends the frame (equal sequences log-added)
          (y, k)     -> open: y + k may emit again on t; on the last sub-step it ends the
                        frame without a blank, as greedy search does at its cap
        keep the `beam` best of closed and open together
    hypotheses entering frame t+1 = closed

Open hypotheses at one sub-step have all emitted the same number of symbols on t, so
they have distinct sequences; equal sequences meet only in `closed` (reached by
different alignments), where they are merged; the merged hypothesis keeps the timestamps
of the more probable alignment. With beam = 1 every step keeps the single most probable
extension: exactly greedy search with the same max_sym_per_frame.

Hotwords (DecodingOptions.hotwords): each hypothesis carries its state in the hotword
automaton (asr_recipes.decoding.context_graph) and its running bonus, both part of the
per-stream state, so a match continues across streaming chunks. A candidate (y, k) is
ranked with the bonus of k included, before the top-k, so the tokens of a hotword can enter
the beam at all; blank and <unk> leave the state alone. Results subtract the bonus advanced
for matches still unfinished, so final scores reward completed phrases only.

Language model (DecodingOptions.lm, lodr_bigram; asr_recipes.decoding.lm_fusion): with
shallow fusion each hypothesis also carries its LM node and running LM score, and a
candidate (y, k) is ranked with k's LM term included, like the hotword bonus; results add the
end-of-sentence terms. With lm_rescore the search runs without them and results re-rank the
final beam by its LM scores. Hotwords and an LM combine: both terms enter every score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from asr_recipes.decoding.context_graph import ROOT, ContextGraph
from asr_recipes.decoding.lm_fusion import LmFusion, LmNode
from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.search import DecoderCache, SearchStrategy, log_add

Tokens = tuple[int, ...]


@dataclass
class Hyp:
    """A hypothesis' score (total log-probability + running hotword bonus + running LM
    score), the frame of each of its tokens, its hotword automaton state and running bonus,
    its LM node and running LM score (those four depend on the token sequence only)."""

    score: float
    timestamps: tuple[int, ...] = ()
    context: int = ROOT
    bonus: float = 0.0
    lm: Optional[LmNode] = None
    lm_score: float = 0.0


def merge(hyps: dict, key, score: float, timestamps: tuple[int, ...], context: int = ROOT,
          bonus: float = 0.0, lm: Optional[LmNode] = None, lm_score: float = 0.0) -> None:
    """Add one alignment of ``key`` (a token sequence) to ``hyps``: scores log-add (the
    bonus and LM score, equal for both, factor out), the better alignment's timestamps stay."""
    old = hyps.get(key)
    if old is None:
        hyps[key] = Hyp(score, timestamps, context, bonus, lm, lm_score)
    else:
        hyps[key] = Hyp(log_add(old.score, score), old.timestamps if old.score >= score else timestamps,
                        context, bonus, old.lm, lm_score)


@dataclass
class BeamStream:
    """One stream's beam: token sequence -> Hyp, and the encoder frames seen so far."""

    hyps: dict[Tokens, Hyp] = field(default_factory=lambda: {(): Hyp(0.0)})
    frames: int = 0


def ranked(stream: BeamStream, context_size: int, graph: ContextGraph | None = None,
           lm_final: Optional[dict] = None) -> DecodingResult:
    """The stream's hypotheses best first by log-probability per symbol, score / (tokens +
    context_size): the rule by which icefall's and sherpa-onnx's beam searches pick their
    result (length normalisation: a total log-probability favours short hypotheses). With
    hotwords, scores are final (the bonus advanced for unfinished matches taken back);
    Hypothesis.score stays the total. ``lm_final``: token sequence -> LM score added now
    (the end-of-sentence terms of shallow fusion, or the whole rescoring score)."""
    final = []
    for y, h in stream.hyps.items():
        undo = graph.pending(h.context) if graph is not None else 0.0
        lm = h.lm_score + (lm_final[y] if lm_final is not None else 0.0)
        final.append(Hypothesis(y, h.score - h.lm_score - undo + lm, h.timestamps, h.bonus - undo, lm))
    return DecodingResult(tuple(sorted(final, key=lambda h: h.score / (len(h.tokens) + context_size), reverse=True)))


class ModifiedBeamSearch(SearchStrategy):
    name = "modified_beam_search"
    uses_beam = True
    uses_hotwords = True
    uses_lm = True

    def __init__(self, model, options):
        super().__init__(model, options)
        self.graph = ContextGraph(options.hotwords, model.vocab_size) if options.hotwords else None
        self.fusion = None
        if options.uses_lm:
            device = next(model.parameters()).device
            self.fusion = LmFusion.from_options(options, model.vocab_size, self.silent, device)
        self.shallow = self.fusion is not None and not options.lm_rescore

    def start(self, num_streams: int) -> list[BeamStream]:
        lm = self.fusion.root() if self.shallow else None
        return [BeamStream({(): Hyp(0.0, lm=lm)}) for _ in range(num_streams)]

    def results(self, streams: Sequence[BeamStream]) -> list[DecodingResult]:
        if self.fusion is None:
            return [ranked(s, self.context_size, self.graph) for s in streams]
        if self.shallow:  # the end-of-sentence terms
            nodes = [h.lm for s in streams for h in s.hyps.values()]
            self.fusion.resolve(nodes)
            ends = iter(self.fusion.end_scores(nodes))
            finals = [{y: next(ends) for y in s.hyps} for s in streams]
        else:  # rescoring: every hypothesis of every stream in one LM batch
            sentences = [y for s in streams for y in s.hyps]
            scores = iter(self.fusion.sentence_scores(sentences))
            finals = [{y: next(scores) for y in s.hyps} for s in streams]
        return [ranked(s, self.context_size, self.graph, f) for s, f in zip(streams, finals)]

    @torch.inference_mode()
    def advance(self, streams: Sequence[BeamStream], encoder_out: Tensor, encoder_lens: Tensor) -> None:
        N = encoder_out.size(0)
        enc_proj = self.project_encoder(encoder_out)  # (N, T', J)
        cache = DecoderCache(self.model, encoder_out.device)
        lens = encoder_lens.tolist()
        for t in range(max(lens, default=0)):
            active = [n for n in range(N) if lens[n] > t]
            opened = {n: streams[n].hyps for n in active}
            closed: dict[int, dict[Tokens, Hyp]] = {n: {} for n in active}
            for sub_step in range(self.options.max_sym_per_frame):
                last = sub_step == self.options.max_sym_per_frame - 1
                rows = [(n, y, hyp) for n in active for y, hyp in opened[n].items()]
                if not rows:
                    break
                values, flat, lm_terms = self._best_extensions(enc_proj, t, rows, active, cache)
                for a, n in enumerate(active):
                    if opened[n]:
                        frame = streams[n].frames + t
                        self._select(values[a], flat[a], lm_terms[a], opened, closed, n, last, frame)
            for n in active:
                streams[n].hyps = closed[n]
        for n in range(N):
            streams[n].frames += lens[n]

    def _best_extensions(self, enc_proj: Tensor, t: int, rows: list, active: list[int],
                         cache: DecoderCache) -> tuple[list, list, list]:
        """The `beam` best (hypothesis, symbol) extensions of each active stream, by
        score(y) + log p(k | frame t, y), in one topk over a padded (A, beam * V) tensor.

        rows: (n, y, hyp) of the open hypotheses, grouped by stream in `active` order
        (at most `beam` each). Returns Python lists (A, beam) of scores and of flat indices
        slot * V + k, slot being y's position among stream n's open hypotheses; -inf
        scores mark padding, and a hypothesis at its symbol cap can only take blank. The third
        list (A, beam) holds each extension's LM term (zeros without shallow fusion), read
        from the same tensor as the scores so the hypotheses' LM scores add up exactly."""
        device, beam = enc_proj.device, self.options.beam
        utts = torch.tensor([n for n, _, _ in rows], device=device)  # (R,)
        dec_proj = cache([self.context(y) for _, y, _ in rows])  # (R, J)
        log_probs = self.log_probs(enc_proj[utts, t], dec_proj)  # (R, V)
        cap = self.options.utterance_cap
        self.blank_only(log_probs, torch.tensor([len(y) >= cap for _, y, _ in rows], device=device))
        scores = torch.tensor([h.score for _, _, h in rows], dtype=torch.float64, device=device)  # (R,)
        position = {n: a for a, n in enumerate(active)}
        utt_index, slot = [], []
        for n, _, _ in rows:
            slot.append(slot[-1] + 1 if utt_index and utt_index[-1] == position[n] else 0)
            utt_index.append(position[n])
        V = log_probs.size(1)
        padded = log_probs.new_full((len(active), beam, V), float("-inf"), dtype=torch.float64)  # (A, beam, V)
        candidates = log_probs.double() + scores[:, None]  # (R, V)
        if self.graph is not None:  # each token's hotword bonus; blank and <unk> get none
            bonus = torch.from_numpy(np.stack([self.graph.transitions(h.context)[1] for _, _, h in rows]))
            bonus[:, sorted(self.silent)] = 0.0
            candidates += bonus.to(device)  # (R, V)
        lm_terms = None
        if self.shallow:  # each token's LM term (LODR included); blank and <unk> get none
            nodes = [h.lm for _, _, h in rows]
            self.fusion.resolve(nodes)
            terms = self.fusion.token_scores(nodes)  # (R, V)
            candidates += terms
            lm_terms = torch.zeros_like(padded)  # (A, beam, V)
            lm_terms[utt_index, slot] = terms
        padded[utt_index, slot] = candidates
        values, flat = padded.view(len(active), beam * V).topk(beam, dim=1)  # (A, beam) each
        if lm_terms is None:
            return values.tolist(), flat.tolist(), [[0.0] * beam for _ in active]
        return values.tolist(), flat.tolist(), lm_terms.view(len(active), beam * V).gather(1, flat).tolist()

    def _select(self, values: list[float], flat: list[int], lm_terms: list[float], opened: dict, closed: dict,
                n: int, last: bool, frame: int) -> None:
        """Apply stream n's best extensions (values, flat, lm_terms as from _best_extensions) on encoder
        frame ``frame`` to its open/closed hypotheses and keep the `beam` best of both."""
        beam, V = self.options.beam, self.model.vocab_size
        parents = list(opened[n].items())
        new_open: dict[Tokens, Hyp] = {}
        for v, i, lm_term in zip(values, flat, lm_terms):
            if v == -math.inf:
                continue
            (y, hyp), k = parents[i // V], i % V
            if k in self.silent:
                merge(closed[n], y, v, hyp.timestamps, hyp.context, hyp.bonus, hyp.lm, hyp.lm_score)
                continue
            context, bonus = self.graph.step(hyp.context, k) if self.graph is not None else (ROOT, 0.0)
            lm, lm_score = hyp.lm, hyp.lm_score
            if self.shallow:
                lm, lm_score = self.fusion.child(hyp.lm, k), lm_score + lm_term
            if last:
                merge(closed[n], y + (k,), v, hyp.timestamps + (frame,), context, hyp.bonus + bonus, lm, lm_score)
            else:
                new_open[y + (k,)] = Hyp(v, hyp.timestamps + (frame,), context, hyp.bonus + bonus, lm, lm_score)
        pool = [(h.score, True, y, h) for y, h in closed[n].items()]
        pool += [(h.score, False, y, h) for y, h in new_open.items()]
        pool.sort(key=lambda e: (e[0], e[1], e[2]), reverse=True)
        kept = pool[:beam]
        closed[n] = {y: h for _, is_closed, y, h in kept if is_closed}
        opened[n] = {y: h for _, is_closed, y, h in kept if not is_closed}

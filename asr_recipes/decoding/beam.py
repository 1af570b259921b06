"""Graves-style beam search (Graves 2012, "Sequence Transduction with RNNs", Alg. 1),
one utterance at a time, without the prefix-merging step (hypotheses with equal token
sequences are merged by log-add instead)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.search import DecoderCache, SearchStrategy, log_add


class BeamSearch(SearchStrategy):
    """Per frame t: A holds hypotheses that may still emit on t, B those that took blank.

    Repeatedly expand the best hypothesis y of A: y + blank goes to B, y + k (the `beam`
    best tokens) back to A, as long as y emitted fewer than max_sym_per_frame symbols on
    t and is below the utterance cap. Stop once B holds `beam` hypotheses at least as
    probable as the best one left in A (or A is empty); keep the `beam` best of B. Every
    hypothesis leaves a frame through blank, including one at the symbol cap.
    Returns up to `beam` hypotheses per utterance, best first.
    """

    name = "beam_search"
    uses_beam = True

    @torch.inference_mode()
    def search(self, encoder_out: Tensor, encoder_lens: Tensor) -> list[DecodingResult]:
        enc_proj = self.project_encoder(encoder_out)  # (N, T', J)
        cache = DecoderCache(self.model, enc_proj.device)  # contexts recur across the batch's utterances
        return [self._one(enc_proj[n, : int(T)], self.options.symbol_cap(int(T)), cache)
                for n, T in enumerate(encoder_lens.tolist())]

    def _one(self, enc_proj: Tensor, cap: int, cache: DecoderCache) -> DecodingResult:
        """enc_proj: (T', J) projected frames of one utterance."""
        beam, max_sym, blank = self.options.beam, self.options.max_sym_per_frame, self.blank_id
        B: dict[tuple[int, ...], float] = {(): 0.0}
        for t in range(enc_proj.size(0)):
            # (tokens, symbols emitted on frame t) -> score. The count is part of the key so
            # that the per-frame cap applies to each path exactly; B merges them again.
            A = {(y, 0): score for y, score in B.items()}
            B = {}
            while A:
                y, count = key = max(A, key=A.__getitem__)
                score = A.pop(key)
                log_probs = self.log_probs(enc_proj[t : t + 1], cache([self.context(y)]))[0]  # (V,)
                B[y] = log_add(B.get(y), score + float(log_probs[blank]))
                if count < max_sym and len(y) < cap:
                    log_probs[blank] = float("-inf")
                    values, ids = log_probs.topk(min(beam, log_probs.numel()))  # (beam,)
                    for v, k in zip(values.tolist(), ids.tolist()):
                        if v > -math.inf:
                            new = (y + (k,), count + 1)
                            A[new] = log_add(A.get(new), score + v)
                if len(B) >= beam and A and sorted(B.values(), reverse=True)[beam - 1] >= max(A.values()):
                    break
            B = dict(sorted(B.items(), key=lambda kv: kv[1], reverse=True)[:beam])
        ranked = sorted(B.items(), key=lambda kv: kv[1], reverse=True)
        return DecodingResult(tuple(Hypothesis(y, s) for y, s in ranked))

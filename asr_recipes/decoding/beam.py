"""Graves-style beam search (Graves 2012, "Sequence Transduction with RNNs", Alg. 1),
one stream at a time, without the prefix-merging step (hypotheses with equal token
sequences are merged by log-add instead)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from asr_recipes.decoding.modified_beam import BeamStream, Hyp, merge, ranked
from asr_recipes.decoding.options import DecodingResult
from asr_recipes.decoding.search import DecoderCache, SearchStrategy


class BeamSearch(SearchStrategy):
    """Per frame t: A holds hypotheses that may still emit on t, B those that took blank
    (or <unk>).

    Repeatedly expand the best hypothesis y of A: y + blank goes to B, y + k (the `beam`
    best tokens) back to A, as long as y emitted fewer than max_sym_per_frame symbols on
    t and is below the utterance cap. Stop once B holds `beam` hypotheses at least as
    probable as the best one left in A (or A is empty); keep the `beam` best of B. Every
    hypothesis leaves a frame through blank, including one at the symbol cap.
    Returns up to `beam` hypotheses per stream, best first.
    """

    name = "beam_search"
    uses_beam = True

    def start(self, num_streams: int) -> list[BeamStream]:
        return [BeamStream() for _ in range(num_streams)]

    def results(self, streams: Sequence[BeamStream]) -> list[DecodingResult]:
        return [ranked(s, self.context_size) for s in streams]

    @torch.inference_mode()
    def advance(self, streams: Sequence[BeamStream], encoder_out: Tensor, encoder_lens: Tensor) -> None:
        enc_proj = self.project_encoder(encoder_out)  # (N, T', J)
        cache = DecoderCache(self.model, enc_proj.device)  # contexts recur across the batch's streams
        for n, T in enumerate(encoder_lens.tolist()):
            for t in range(T):
                streams[n].hyps = self._frame(enc_proj[n, t : t + 1], streams[n].hyps, streams[n].frames + t, cache)
            streams[n].frames += T

    def _frame(self, enc_proj: Tensor, hyps: dict, frame: int, cache: DecoderCache) -> dict:
        """One frame (enc_proj (1, J)) of one stream: hypotheses in -> the `beam` best out."""
        beam, max_sym, cap = self.options.beam, self.options.max_sym_per_frame, self.options.utterance_cap
        silent = sorted(self.silent)
        # (tokens, symbols emitted on this frame) -> Hyp. The count is part of the key so
        # that the per-frame cap applies to each path exactly; B merges them again.
        A = {(y, 0): h for y, h in hyps.items()}
        B: dict = {}
        while A:
            y, count = key = max(A, key=lambda k: A[k].score)
            hyp = A.pop(key)
            log_probs = self.log_probs(enc_proj, cache([self.context(y)]))[0]  # (V,)
            merge(B, y, hyp.score + float(log_probs[silent].logsumexp(0)), hyp.timestamps)
            if count < max_sym and len(y) < cap:
                log_probs[silent] = float("-inf")
                values, ids = log_probs.topk(min(beam, log_probs.numel()))  # (beam,)
                for v, k in zip(values.tolist(), ids.tolist()):
                    if v > -math.inf:
                        merge(A, (y + (k,), count + 1), hyp.score + v, hyp.timestamps + (frame,))
            if len(B) >= beam and A and sorted((h.score for h in B.values()), reverse=True)[beam - 1] >= max(
                    h.score for h in A.values()):
                break
        return dict(sorted(B.items(), key=lambda kv: kv[1].score, reverse=True)[:beam])

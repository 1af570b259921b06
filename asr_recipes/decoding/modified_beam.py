"""Modified beam search, batched over utterances, with up to max_sym_per_frame symbols
per frame.

With max_sym_per_frame = 1 this is the usual "modified" beam search for transducers
(one symbol per frame at most; hypotheses with equal token sequences merged by log-add).
Character tokens at 40 ms per encoder frame often need several symbols per frame, so
each frame is expanded in up to max_sym_per_frame sub-steps:

    open   = the hypotheses entering frame t        (they may still emit on t)
    closed = {}                                      (done with t)
    repeat max_sym_per_frame times:
        for every open hypothesis y and symbol k:  candidate (y, k), score(y) + log p(k | t, y)
        keep the `beam` best candidates of each utterance
          (y, blank) -> closed: y ends the frame (equal sequences log-added)
          (y, k)     -> open: y + k may emit again on t; on the last sub-step it ends the
                        frame without a blank, as greedy search does at its cap
        keep the `beam` best of closed and open together
    hypotheses entering frame t+1 = closed

Open hypotheses at one sub-step have all emitted the same number of symbols on t, so
they have distinct sequences; equal sequences meet only in `closed` (reached by
different alignments), where they are merged. With beam = 1 every step keeps the single
most probable extension: exactly greedy search with the same max_sym_per_frame.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.search import DecoderCache, SearchStrategy, log_add

Hyps = dict[tuple[int, ...], float]  # token sequence -> log-probability


class ModifiedBeamSearch(SearchStrategy):
    name = "modified_beam_search"
    uses_beam = True

    @torch.inference_mode()
    def search(self, encoder_out: Tensor, encoder_lens: Tensor) -> list[DecodingResult]:
        N = encoder_out.size(0)
        enc_proj = self.project_encoder(encoder_out)  # (N, T', J)
        cache = DecoderCache(self.model, encoder_out.device)
        lens = encoder_lens.tolist()
        caps = [self.options.symbol_cap(T) for T in lens]
        beams: list[Hyps] = [{(): 0.0} for _ in range(N)]
        for t in range(max(lens, default=0)):
            active = [n for n in range(N) if lens[n] > t]
            opened: dict[int, Hyps] = {n: beams[n] for n in active}
            closed: dict[int, Hyps] = {n: {} for n in active}
            for sub_step in range(self.options.max_sym_per_frame):
                last = sub_step == self.options.max_sym_per_frame - 1
                rows = [(n, y, score) for n in active for y, score in opened[n].items()]
                if not rows:
                    break
                total = self._extension_scores(enc_proj, t, rows, caps, cache)  # (R, V)
                start = 0
                for n in active:
                    k = len(opened[n])
                    if k:
                        self._select(total[start : start + k], list(opened[n]), opened, closed, n, last)
                        start += k
            for n in active:
                beams[n] = closed[n]
        return [DecodingResult(tuple(Hypothesis(y, s) for y, s in sorted(b.items(), key=lambda kv: kv[1],
                                                                              reverse=True)))
                for b in beams]

    def _extension_scores(self, enc_proj: Tensor, t: int, rows: list, caps: list[int],
                          cache: DecoderCache) -> Tensor:
        """(R, V) float64: score(y) + log p(k | frame t, y) for each row (n, y, score);
        only blank for a hypothesis at its utterance's symbol cap."""
        device = enc_proj.device
        utts = torch.tensor([n for n, _, _ in rows], device=device)  # (R,)
        dec_proj = cache([self.context(y) for _, y, _ in rows])  # (R, J)
        log_probs = self.log_probs(enc_proj[utts, t], dec_proj)  # (R, V)
        at_cap = torch.tensor([len(y) >= caps[n] for n, y, _ in rows], device=device)  # (R,)
        blank_col = log_probs[:, self.blank_id].clone()
        log_probs[at_cap] = float("-inf")
        log_probs[:, self.blank_id] = blank_col
        scores = torch.tensor([s for _, _, s in rows], dtype=torch.float64, device=device)  # (R,)
        return log_probs.double() + scores[:, None]  # (R, V)

    def _select(self, total: Tensor, parents: list, opened: dict, closed: dict, n: int, last: bool) -> None:
        """Keep the beam best extensions of utterance n's open hypotheses (total: (k, V))."""
        beam, V = self.options.beam, total.size(1)
        values, flat = total.flatten().topk(min(beam, total.numel()))  # (beam,)
        new_open: Hyps = {}
        for v, i in zip(values.tolist(), flat.tolist()):
            if v == -math.inf:
                continue
            y, k = parents[i // V], i % V
            if k == self.blank_id:
                closed[n][y] = log_add(closed[n].get(y), v)
            elif last:
                closed[n][y + (k,)] = log_add(closed[n].get(y + (k,)), v)
            else:
                new_open[y + (k,)] = v
        pool = [(s, True, y) for y, s in closed[n].items()] + [(s, False, y) for y, s in new_open.items()]
        pool.sort(reverse=True)
        kept = pool[:beam]
        closed[n] = {y: s for s, is_closed, y in kept if is_closed}
        opened[n] = {y: s for s, is_closed, y in kept if not is_closed}

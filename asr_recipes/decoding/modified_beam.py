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


def _best_first(hyps: Hyps) -> list[tuple[tuple[int, ...], float]]:
    return sorted(hyps.items(), key=lambda kv: kv[1], reverse=True)


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
                values, flat = self._best_extensions(enc_proj, t, rows, active, caps, cache)
                for a, n in enumerate(active):
                    if opened[n]:
                        self._select(values[a], flat[a], list(opened[n]), opened, closed, n, last)
            for n in active:
                beams[n] = closed[n]
        return [DecodingResult(tuple(Hypothesis(y, s) for y, s in _best_first(b))) for b in beams]

    def _best_extensions(self, enc_proj: Tensor, t: int, rows: list, active: list[int], caps: list[int],
                         cache: DecoderCache) -> tuple[list, list]:
        """The `beam` best (hypothesis, symbol) extensions of each active utterance, by
        score(y) + log p(k | frame t, y), in one topk over a padded (A, beam * V) tensor.

        rows: (n, y, score) of the open hypotheses, grouped by utterance in `active` order
        (at most `beam` each). Returns Python lists (A, beam) of scores and of flat indices
        slot * V + k, slot being y's position among utterance n's open hypotheses; -inf
        scores mark padding, and a hypothesis at its symbol cap can only take blank."""
        device, beam = enc_proj.device, self.options.beam
        utts = torch.tensor([n for n, _, _ in rows], device=device)  # (R,)
        dec_proj = cache([self.context(y) for _, y, _ in rows])  # (R, J)
        log_probs = self.log_probs(enc_proj[utts, t], dec_proj)  # (R, V)
        self.blank_only(log_probs, torch.tensor([len(y) >= caps[n] for n, y, _ in rows], device=device))
        scores = torch.tensor([s for _, _, s in rows], dtype=torch.float64, device=device)  # (R,)
        position = {n: a for a, n in enumerate(active)}
        utt_index, slot = [], []
        for n, _, _ in rows:
            slot.append(slot[-1] + 1 if utt_index and utt_index[-1] == position[n] else 0)
            utt_index.append(position[n])
        V = log_probs.size(1)
        padded = log_probs.new_full((len(active), beam, V), float("-inf"), dtype=torch.float64)  # (A, beam, V)
        padded[utt_index, slot] = log_probs.double() + scores[:, None]
        values, flat = padded.view(len(active), beam * V).topk(beam, dim=1)  # (A, beam) each
        return values.tolist(), flat.tolist()

    def _select(self, values: list[float], flat: list[int], parents: list, opened: dict, closed: dict, n: int,
                last: bool) -> None:
        """Apply utterance n's best extensions (values, flat as from _best_extensions) to its
        open/closed hypotheses and keep the `beam` best of both."""
        beam, V = self.options.beam, self.model.vocab_size
        new_open: Hyps = {}
        for v, i in zip(values, flat):
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

"""Greedy search, batched over utterances, with up to max_sym_per_frame symbols per frame."""

from __future__ import annotations

import torch
from torch import Tensor

from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.search import SearchStrategy


class GreedySearch(SearchStrategy):
    """At each (frame, sub-step) take the most probable of blank and the tokens.

    Blank ends the utterance's current frame; a token is appended and the same frame is
    tried again, until max_sym_per_frame tokens were emitted there (then the frame ends
    without a blank). An utterance at its symbol cap can only take blank. The score is
    the sum of the chosen log-probabilities.
    """

    name = "greedy_search"

    @torch.inference_mode()
    def search(self, encoder_out: Tensor, encoder_lens: Tensor) -> list[DecodingResult]:
        N = encoder_out.size(0)
        device = encoder_out.device
        decoder, decoder_proj = self.model.decoder, self.model.joiner.decoder_proj
        enc_proj = self.project_encoder(encoder_out)  # (N, T', J)
        lens = encoder_lens.to(device)  # (N,)
        caps = torch.tensor([self.options.symbol_cap(n) for n in encoder_lens.tolist()], device=device)  # (N,)
        counts = torch.zeros(N, dtype=torch.int64, device=device)  # symbols emitted so far
        scores = torch.zeros(N, dtype=torch.float64, device=device)
        hyps: list[list[int]] = [[] for _ in range(N)]
        contexts = torch.full((N, self.context_size), self.blank_id, dtype=torch.int64, device=device)  # (N, c)
        # decoder output per utterance, recomputed only for utterances that just emitted
        dec_proj = decoder_proj(decoder(contexts, need_pad=False).squeeze(1))  # (N, J)

        for t in range(int(encoder_lens.max()) if N else 0):
            in_frame = lens > t  # (N,) utterances still on frame t
            for _ in range(self.options.max_sym_per_frame):
                rows = in_frame.nonzero().squeeze(1)  # (R,)
                if rows.numel() == 0:
                    break
                log_probs = self.log_probs(enc_proj[rows, t], dec_proj[rows])  # (R, V)
                self.blank_only(log_probs, counts[rows] >= caps[rows])
                best_lp, best = log_probs.max(dim=-1)  # (R,), (R,)
                scores[rows] += best_lp.double()
                emit = best != self.blank_id  # (R,)
                in_frame[rows[~emit]] = False
                emitted, tokens = rows[emit], best[emit]  # (E,), (E,)
                if emitted.numel() == 0:
                    continue
                contexts[emitted] = torch.cat([contexts[emitted, 1:], tokens[:, None]], dim=1)  # (E, c)
                dec_proj[emitted] = decoder_proj(decoder(contexts[emitted], need_pad=False).squeeze(1))  # (E, J)
                counts[emitted] += 1
                for n, k in zip(emitted.tolist(), tokens.tolist()):
                    hyps[n].append(k)
        return [DecodingResult((Hypothesis(tuple(h), float(s)),)) for h, s in zip(hyps, scores.tolist())]

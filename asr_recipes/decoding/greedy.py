"""Greedy search, batched over streams, with up to max_sym_per_frame symbols per frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.search import SearchStrategy


@dataclass
class GreedyStream:
    """One stream's greedy hypothesis; ``dec_proj`` (J,) is the projected decoder output for
    its current context (None until the first advance)."""

    tokens: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    score: float = 0.0
    frames: int = 0
    dec_proj: Optional[Tensor] = None


class GreedySearch(SearchStrategy):
    """At each (frame, sub-step) take the most probable of blank, <unk> and the tokens.

    Blank (or <unk>) ends the stream's current frame; a token is appended and the same
    frame is tried again, until max_sym_per_frame tokens were emitted there (then the frame
    ends without a blank). A stream at its symbol cap can only take blank. The score is the
    sum of the chosen log-probabilities.
    """

    name = "greedy_search"

    def start(self, num_streams: int) -> list[GreedyStream]:
        return [GreedyStream() for _ in range(num_streams)]

    @torch.inference_mode()
    def advance(self, streams: Sequence[GreedyStream], encoder_out: Tensor, encoder_lens: Tensor) -> None:
        N = encoder_out.size(0)
        device = encoder_out.device
        decoder, decoder_proj = self.model.decoder, self.model.joiner.decoder_proj
        enc_proj = self.project_encoder(encoder_out)  # (N, T', J)
        lens = encoder_lens.to(device)  # (N,)
        cap = self.options.utterance_cap
        at_cap = torch.tensor([len(s.tokens) >= cap for s in streams], device=device)  # (N,)
        contexts = torch.tensor([self.context(s.tokens) for s in streams], dtype=torch.int64,
                                device=device).view(N, self.context_size)  # (N, c)
        fresh = [n for n, s in enumerate(streams) if s.dec_proj is None]
        if fresh:  # a stream's first frames: its start context
            start = decoder_proj(decoder(contexts[fresh], need_pad=False).squeeze(1))  # (F, J)
            for n, d in zip(fresh, start):
                streams[n].dec_proj = d
        # decoder output per stream, recomputed only for streams that just emitted
        dec_proj = torch.stack([s.dec_proj for s in streams]) if N else enc_proj.new_zeros(0, 0)  # (N, J)
        scores = torch.zeros(N, dtype=torch.float64, device=device)
        emitted_at: list[list[tuple[int, int]]] = [[] for _ in range(N)]  # (frame, token)
        counts = torch.tensor([len(s.tokens) for s in streams], dtype=torch.float64, device=device)  # (N,)

        lens_list = encoder_lens.tolist()
        for t in range(max(lens_list, default=0)):
            in_frame = lens > t  # (N,) streams still on frame t
            for _ in range(self.options.max_sym_per_frame):
                rows = in_frame.nonzero().squeeze(1)  # (R,)
                if rows.numel() == 0:
                    break
                log_probs = self.log_probs(enc_proj[rows, t], dec_proj[rows])  # (R, V)
                self.blank_only(log_probs, at_cap[rows])
                best_lp, best = log_probs.max(dim=-1)  # (R,), (R,)
                scores[rows] += best_lp.double()
                emit = best != self.blank_id  # (R,)
                for k in self.silent - {self.blank_id}:
                    emit &= best != k
                in_frame[rows[~emit]] = False
                emitted, tokens = rows[emit], best[emit]  # (E,), (E,)
                if emitted.numel() == 0:
                    continue
                contexts[emitted] = torch.cat([contexts[emitted, 1:], tokens[:, None]], dim=1)  # (E, c)
                dec_proj[emitted] = decoder_proj(decoder(contexts[emitted], need_pad=False).squeeze(1))  # (E, J)
                counts[emitted] += 1
                at_cap[emitted] = counts[emitted] >= cap
                for n, k in zip(emitted.tolist(), tokens.tolist()):
                    emitted_at[n].append((t, k))
        for n, (s, score) in enumerate(zip(streams, scores.tolist())):
            s.tokens += [k for _, k in emitted_at[n]]
            s.timestamps += [s.frames + t for t, _ in emitted_at[n]]
            s.score += score
            s.frames += lens_list[n]
            s.dec_proj = dec_proj[n]

    def results(self, streams: Sequence[GreedyStream]) -> list[DecodingResult]:
        return [DecodingResult((Hypothesis(tuple(s.tokens), s.score, tuple(s.timestamps)),)) for s in streams]

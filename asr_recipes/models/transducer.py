"""Transducer: encoder (Conformer, ...) + stateless decoder + joiner, trained with pruned RNN-T.

Training step (forward):

    features (N, T, 80) --encoder--> encoder_out (N, T', De)
    [blank] + tokens    --decoder--> decoder_out (N, U+1, Dd)
    simple_am_proj(encoder_out) (N, T', V), simple_lm_proj(decoder_out) (N, U+1, V)
        --rnnt_loss_smoothed--> simple_loss, occupation grads px_grad/py_grad
        --get_rnnt_prune_ranges--> ranges (N, T', S)      S = lattice.prune_range
    joiner projections of encoder_out / decoder_out, gathered at ranges (N, T', S, J)
        --joiner (project_input=False)--> logits (N, T', S, V)
        --rnnt_loss_pruned--> pruned_loss

Both losses run in float32 with autocast off: the recursion is a long chain of
log-adds that fp16/bf16 cannot carry. The lattice's settings (prune_range, lm/am scales, delay
penalty, topology) are one LatticeConfig (models/lattice.py). Length conventions:
T' = encoder.output_lengths(T), U = max(token_lens); blank (0) is the start symbol of the
decoder input.

Optional CTC head (asr_recipes.models.ctc.CtcHead, ``ctc_head`` in the model config):
ctc_log_probs(encoder_out) (N, T', V) for the auxiliary CTC / CR-CTC losses
(asr_recipes.training.objective), CTC searches and forced alignment (asr_recipes.decoding).
Its weights are ``ctc_head.*`` in the state dict; a model without a head has no such keys.
"""

import torch
import torchaudio
from torch import Tensor, nn

import asr_recipes.rnnt as k2
from asr_recipes.models.conformer import make_pad_mask
from asr_recipes.models.ctc import CtcHead
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.models.zipformer.constraints import load_whiten_probs, whiten_probs
from asr_recipes.models.zipformer.schedule import set_batch_count


def lattice_boundary(token_lens: Tensor, encoder_lens: Tensor) -> Tensor:
    """(N, 4) int64 rows [0, 0, U_n, T'_n] = [s_begin, t_begin, s_end, t_end] of k2's losses."""
    boundary = torch.zeros(token_lens.size(0), 4, dtype=torch.int64, device=token_lens.device)
    boundary[:, 2] = token_lens
    boundary[:, 3] = encoder_lens
    return boundary


class Transducer(nn.Module):
    """Args:
        encoder: an Encoder (models/encoder.py's contract): forward(features (N, T, F),
            feature_lens (N,), chunk_size, left_context) -> (encoder_out (N, T', De),
            encoder_lens (N,)), output_dim = De, output_lengths, and the streaming methods.
        decoder: StatelessDecoder (output_dim = Dd, context_size, blank_id).
        joiner: Joiner(De, Dd, J, vocab_size).
        vocab_size: V, including blank.
        ctc_head: optional CtcHead(De, V) on the encoder frames (None: no CTC head).
    """

    def __init__(self, encoder: nn.Module, decoder: StatelessDecoder, joiner: Joiner, vocab_size: int,
                 ctc_head: CtcHead | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.joiner = joiner
        self.vocab_size = vocab_size
        self.blank_id = decoder.blank_id
        # cheap additive joiner of the simple loss; its lattice decides where to prune
        self.simple_am_proj = nn.Linear(encoder.output_dim, vocab_size)
        self.simple_lm_proj = nn.Linear(decoder.output_dim, vocab_size)
        self.ctc_head = ctc_head

    def set_batch_count(self, batch_count: float) -> None:
        """Tell every schedule inside the model (the Zipformer's dropout, skip rates, balancer and
        whitening limits; models/zipformer/schedule.py) where training stands, in batches: the
        trainer calls this once per step, before the forward. Models without schedules ignore it."""
        set_batch_count(self, batch_count)

    def training_state(self) -> dict:
        """What the model adapted while training besides its weights and buffers (the Zipformer's
        Whiten check probabilities), in plain types: checkpoints store it so that a resumed run
        continues exactly (load_training_state). Empty for models without such state."""
        probs = whiten_probs(self)
        return {"whiten_probs": probs} if probs else {}

    def load_training_state(self, state: dict) -> None:
        load_whiten_probs(self, state.get("whiten_probs", {}))

    def ctc_log_probs(self, encoder_out: Tensor) -> Tensor:
        """encoder_out (N, T', De) -> CTC log-probabilities (N, T', V) float32; ValueError
        for a model without a CTC head."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (it was built without model.ctc_head=true); use the "
                             "transducer searches and timestamps, or train with model.ctc_head=true")
        return self.ctc_head(encoder_out)

    def encode(self, features: Tensor, feature_lens: Tensor, chunk_size: int = 0,
               left_context: int = -1) -> tuple[Tensor, Tensor]:
        """(N, T, F), (N,) -> encoder_out (N, T', De), encoder_lens (N,) int64.

        chunk_size > 0 (streaming models): attention limited to chunks of that many encoder
        frames plus left_context frames before each (-1: all), i.e. simulated streaming."""
        if chunk_size > 0:
            return self.encoder(features, feature_lens, chunk_size=chunk_size, left_context=left_context)
        return self.encoder(features, feature_lens)

    def _labels(self, tokens: Tensor, token_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Validate the padded labels and build the loss/decoder views of them.

        tokens (N, U_max) int64 padded with anything; token_lens (N,) int64.
        Returns y (N, U) with padding replaced by blank, U = max(token_lens), and the
        SOS-prefixed decoder input (N, U+1).
        """
        if tokens.ndim != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be an (N, U) int64 tensor, got {tuple(tokens.shape)} {tokens.dtype}")
        if token_lens.shape != (tokens.size(0),):
            raise ValueError(f"token_lens must have shape ({tokens.size(0)},), got {tuple(token_lens.shape)}")
        shortest, U = torch.stack(torch.aminmax(token_lens)).tolist() if tokens.size(0) else (0, 0)
        if U > tokens.size(1) or shortest < 0:
            raise ValueError(f"token_lens must lie in [0, {tokens.size(1)}], got {token_lens.tolist()}")
        padding = make_pad_mask(token_lens, U)  # (N, U)
        y = tokens[:, :U].masked_fill(padding, self.blank_id)  # (N, U)
        valid = ~padding
        bad = valid & ((y == self.blank_id) | (y < 0) | (y >= self.vocab_size))  # (N, U)
        if bool(bad.any()):
            n, u = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"utterance {n} of the batch has token id {int(y[n, u])} at position {u}; labels must be in "
                f"[1, {self.vocab_size}) (0 is blank): check the tokenizer matches the model's vocab_size"
            )
        sos_y = nn.functional.pad(y, (1, 0), value=self.blank_id)  # (N, U+1): blank is the SOS context
        return y, sos_y

    def forward(self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor,
                lattice: LatticeConfig = LatticeConfig(), reduction: str = "sum", chunk_size: int = 0,
                left_context: int = -1, symbol_start: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Simple (smoothed) and pruned RNN-T losses.

        Args:
            features: (N, T, F) float, frames >= feature_lens are padding.
            feature_lens: (N,) int64, each giving at least one encoder frame.
            tokens: (N, U_max) int64 label ids in [1, V), padded with any value.
            token_lens: (N,) int64 labels per utterance.
            lattice: prune_range, lm/am scales, delay penalty and topology of both losses.
            reduction: "sum", "mean" (over utterances) or "none" (per utterance).
            chunk_size, left_context: chunked attention for streaming models (see encode()).
            symbol_start: (N,) int64 or None, the first encoder frame on which each utterance
                may emit a symbol (earlier frames blank-only, in both losses; see
                asr_recipes.rnnt.logprobs.forbid_early_symbols).
        Returns:
            (simple_loss, pruned_loss): scalars, or (N,) each with reduction="none"
            (the caller drops non-finite utterances). Negative log-likelihoods in nats.
        """
        encoder_out, encoder_lens = self.encode(features, feature_lens, chunk_size, left_context)  # (N, T', De), (N,)
        return self.losses(encoder_out, encoder_lens, tokens, token_lens, lattice, reduction, symbol_start)

    def losses(self, encoder_out: Tensor, encoder_lens: Tensor, tokens: Tensor, token_lens: Tensor,
               lattice: LatticeConfig = LatticeConfig(), reduction: str = "sum",
               symbol_start: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """forward() after the encoder: (simple_loss, pruned_loss) from encoder_out (N, T', De) and
        encoder_lens (N,); the other arguments and the result as for forward()."""
        y, sos_y = self._labels(tokens, token_lens)  # (N, U), (N, U+1)
        decoder_out = self.decoder(sos_y)  # (N, U+1, Dd)
        boundary = lattice_boundary(token_lens, encoder_lens)  # (N, 4)
        simple_loss, (px_grad, py_grad) = self.simple_loss(encoder_out, decoder_out, y, boundary, lattice, reduction,
                                                           symbol_start)
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range=lattice.prune_range)  # (N, T', S)
        pruned_loss = self.pruned_loss(encoder_out, decoder_out, y, ranges, boundary, lattice, reduction,
                                       symbol_start)
        return simple_loss, pruned_loss

    def simple_loss(self, encoder_out: Tensor, decoder_out: Tensor, y: Tensor, boundary: Tensor,
                    lattice: LatticeConfig, reduction: str,
                    symbol_start: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The smoothed simple loss and its lattice's arc occupations (what pruning reads).

        encoder_out (N, T', De), decoder_out (N, U+1, Dd), y (N, U) labels padded with blank,
        boundary (N, 4) from lattice_boundary. Returns (loss, (px_grad (N, U, T'+1),
        py_grad (N, U+1, T'))); the occupations carry no autograd history. lattice.prune_range
        is not read here. symbol_start as in forward().
        """
        am = self.simple_am_proj(encoder_out)  # (N, T', V)
        lm = self.simple_lm_proj(decoder_out)  # (N, U+1, V)
        with torch.autocast(device_type=encoder_out.device.type, enabled=False):
            return k2.rnnt_loss_smoothed(
                lm=lm.float(),
                am=am.float(),
                symbols=y,
                termination_symbol=self.blank_id,
                lm_only_scale=lattice.lm_scale,
                am_only_scale=lattice.am_scale,
                boundary=boundary,
                delay_penalty=lattice.delay_penalty,
                reduction=reduction,
                return_grad=True,
                rnnt_type=lattice.rnnt_type,
                symbol_start=symbol_start,
            )

    def pruned_loss(self, encoder_out: Tensor, decoder_out: Tensor, y: Tensor, ranges: Tensor, boundary: Tensor,
                    lattice: LatticeConfig, reduction: str, symbol_start: Tensor | None = None) -> Tensor:
        """The full joiner's loss inside the windows ``ranges`` (N, T', S) (shapes as in
        simple_loss); of ``lattice`` it reads delay_penalty and rnnt_type."""
        # project before gathering: the projections then run on T' + U+1 rows, not T' * S
        am_pruned, lm_pruned = k2.do_rnnt_pruning(
            am=self.joiner.encoder_proj(encoder_out), lm=self.joiner.decoder_proj(decoder_out), ranges=ranges
        )  # (N, T', S, J) each
        logits = self.joiner(am_pruned, lm_pruned, project_input=False)  # (N, T', S, V)
        with torch.autocast(device_type=encoder_out.device.type, enabled=False):
            return k2.rnnt_loss_pruned(
                logits=logits.float(),
                symbols=y,
                ranges=ranges,
                termination_symbol=self.blank_id,
                boundary=boundary,
                delay_penalty=lattice.delay_penalty,
                reduction=reduction,
                rnnt_type=lattice.rnnt_type,
                symbol_start=symbol_start,
            )

    def full_loss(
        self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor, reduction: str = "sum",
        chunk_size: int = 0, left_context: int = -1,
    ) -> Tensor:
        """Unpruned RNN-T loss with the full joiner, via torchaudio (reference/comparison).

        Same inputs as forward(). Evaluates the joiner on every (t, u) pair, so memory is
        O(N T' (U+1) V): use it on small batches. Returns a scalar, or (N,) with "none".
        """
        y, sos_y = self._labels(tokens, token_lens)  # (N, U), (N, U+1)
        encoder_out, encoder_lens = self.encode(features, feature_lens, chunk_size, left_context)  # (N, T', De), (N,)
        decoder_out = self.decoder(sos_y)  # (N, U+1, Dd)
        # torchaudio insists that T' equals max(encoder_lens)
        encoder_out = encoder_out[:, : int(encoder_lens.max())]  # (N, T'', De)
        logits = self.joiner(encoder_out.unsqueeze(2), decoder_out.unsqueeze(1))  # (N, T'', U+1, V)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return torchaudio.functional.rnnt_loss(
                logits.float(),
                y.int(),
                encoder_lens.int(),
                token_lens.int(),
                blank=self.blank_id,
                reduction=reduction,
            )

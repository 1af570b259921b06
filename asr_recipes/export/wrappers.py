"""The three graphs sherpa-onnx runs, as torch modules around a trained Transducer.

Each wrapper computes exactly what our PyTorch searches compute at the same point (the
joiner's input projections are folded into the encoder and decoder graphs, as the
searches apply them once per frame / per context), with the inputs and outputs of
asr_recipes.export.contract. They hold references to the model's own modules: no weights
are copied or changed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OfflineEncoder(nn.Module):
    """x (N, T, F) float32, x_lens (N,) int64 -> encoder_out (N, T', J) projected,
    encoder_out_lens (N,) int64; T' = encoder.output_lengths(T). Frames t' >= lens[n]
    are padding (sherpa never reads them)."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.encoder_proj = model.joiner.encoder_proj

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        encoder_out, lens = self.encoder(x, x_lens)  # (N, T', D), (N,)
        return self.encoder_proj(encoder_out), lens  # (N, T', J), (N,)


class StreamingEncoder(nn.Module):
    """One chunk of a causal encoder with its caches as explicit inputs and outputs.

    x (N, T, F) with T, decode_chunk_len = encoder.chunk_window(chunk_size) (Conformer:
    4 * chunk_size + 3 and 4 * chunk_size feature frames; all valid: sherpa feeds full
    windows only), cached_attn (L, left, N, D), cached_conv (L, k-1, N, D),
    processed_lens (N,) int64 FEATURE frames before the window (what sherpa passes) ->
    encoder_out (N, chunk_size, J) projected, new_cached_attn, new_cached_conv.

    Conformer.streaming_forward counts ENCODER frames already processed (to mask cache
    slots not filled yet); windows start every decode_chunk_len feature frames and each
    gives chunk_size encoder frames, so that is processed_lens // (decode_chunk_len // chunk_size),
    processed_lens // 4 for a x4 front end.
    The caches and metadata are sherpa-onnx's streaming Conformer layout (contract.py).
    """

    def __init__(self, model, chunk_size: int, left_context: int):
        super().__init__()
        self.encoder = model.encoder
        self.encoder_proj = model.joiner.encoder_proj
        self.chunk_size = chunk_size
        self.left_context = left_context
        self.T, self.decode_chunk_len = self.encoder.chunk_window(chunk_size)
        self.pad_length = self.T - self.decode_chunk_len  # the front end's look-ahead

    def forward(self, x: Tensor, cached_attn: Tensor, cached_conv: Tensor,
                processed_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        N = x.size(0)
        x_lens = torch.full((N,), self.T, dtype=torch.int64, device=x.device)  # (N,): full windows
        processed = torch.div(processed_lens, self.decode_chunk_len // self.chunk_size,
                              rounding_mode="floor")  # (N,) encoder frames
        out, _, (new_attn, new_conv, _) = self.encoder.streaming_forward(
            x, x_lens, [cached_attn, cached_conv, processed])  # (N, chunk, D)
        return self.encoder_proj(out), new_attn, new_conv

    def metadata(self) -> dict[str, int]:
        """The integers sherpa reads from the encoder (contract.STREAMING_METADATA)."""
        enc = self.encoder
        return {"num_encoder_layers": enc.num_layers, "T": self.T, "decode_chunk_len": self.decode_chunk_len,
                "left_context": self.left_context, "encoder_dim": enc.output_dim, "pad_length": self.pad_length,
                "cnn_module_kernel": enc.kernel_size}

    def initial_states(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Zero caches (what sherpa starts a stream with), batch ``batch_size``."""
        attn, conv, _ = self.encoder.init_states(batch_size, self.left_context)
        return attn, conv


class Decoder(nn.Module):
    """y (N, context_size) int64 -> decoder_out (N, J): decoder + decoder_proj.

    Ids < 0 are sherpa's "before the start" marker ([-1, ..., -1, 0] starts every
    hypothesis); our decoder pads the start with blank, so they are mapped to blank."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder
        self.decoder_proj = model.joiner.decoder_proj
        self.blank_id = model.decoder.blank_id

    def forward(self, y: Tensor) -> Tensor:
        y = torch.where(y < 0, torch.full_like(y, self.blank_id), y)  # (N, c)
        out = self.decoder(y, need_pad=False).squeeze(1)  # (N, Dd)
        return self.decoder_proj(out)  # (N, J)


class Joiner(nn.Module):
    """encoder_out (N, J), decoder_out (N, J), both projected -> logit (N, V)."""

    def __init__(self, model):
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.joiner(encoder_out, decoder_out, project_input=False)

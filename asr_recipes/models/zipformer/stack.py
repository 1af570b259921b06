"""Stacks of Zipformer layers, some at a reduced frame rate (time-major (T, N, C) tensors).

A stack with downsampling factor ds > 1 averages each ds consecutive 50 Hz frames with learned
softmax weights (SimpleDownsample), runs its layers at 50/ds Hz, repeats each output frame ds
times (SimpleUpsample) and mixes the result with its input through a learned bypass.

Padding. A group of ds frames that straddles an utterance's end is completed with copies of
its last valid frame, which is what the utterance alone would see (its sequence is extended by
repeating the last frame), so the valid low-rate frames never depend on padding. A low-rate
frame is valid while it contains a valid 50 Hz frame: ceil(valid / ds) of them.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from asr_recipes.models.zipformer.attention import CompactRelPositionalEncoding
from asr_recipes.models.zipformer.layer import BypassModule, ZipformerLayer
from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat


def repeat_last_valid(x: Tensor, lengths: Tensor) -> Tensor:
    """(T, N, C): frames t >= lengths[n] replaced by frame lengths[n] - 1 of utterance n."""
    T, N, _ = x.shape
    last = x[(lengths - 1).clamp(min=0), torch.arange(N, device=x.device)]  # (N, C)
    padded = torch.arange(T, device=x.device)[:, None] >= lengths[None, :]  # (T, N)
    return torch.where(padded[..., None], last[None], x)


class SimpleDownsample(nn.Module):
    """(T, N, C) -> (ceil(T / ds), N, C): softmax(bias)-weighted sums of ds consecutive frames;
    the last group is completed by repeating the last frame (or, with ``lengths``, each
    utterance's last valid frame; see the module docstring)."""

    def __init__(self, channels: int, downsample: int, dropout: FloatLike = 0.0, causal: bool = False):
        super().__init__()
        self.downsample = downsample
        self.bias = nn.Parameter(torch.zeros(downsample))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        T, N, C = x.shape
        ds = self.downsample
        if lengths is not None:
            x = repeat_last_valid(x, lengths)
        groups = (T + ds - 1) // ds  # ceil; not -(-T // ds): ONNX divides integers truncating
        # unconditionally (the pad may be empty), so that an exported graph pads for every T
        x = torch.cat([x, x[T - 1 :].expand(groups * ds - T, N, C)], dim=0)  # (groups * ds, N, C)
        weights = self.bias.softmax(dim=0)[:, None, None]  # (ds, 1, 1)
        return (x.reshape(groups, ds, N, C) * weights).sum(dim=1)  # (groups, N, C)


class SimpleUpsample(nn.Module):
    """(T, N, C) -> (T * upsample, N, C): each frame repeated ``upsample`` times."""

    def __init__(self, num_channels: int, upsample: int):
        super().__init__()
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        T, N, C = x.shape
        return x.unsqueeze(1).expand(T, self.upsample, N, C).reshape(T * self.upsample, N, C)


class ZipformerStack(nn.Module):
    """num_layers copies of one ZipformerLayer (all start from the same initial weights, as in
    icefall) sharing one positional encoding.

    In training, each layer is skipped for whole utterances at a rate that decays from
    ``initial_layerdrop_rate`` to ``final_layerdrop_rate`` over this stack's share
    [warmup_begin, warmup_end] of the warm-up batches, layer after layer.
    """

    def __init__(self, layer: ZipformerLayer, num_layers: int, pos_dim: int, warmup_begin: float, warmup_end: float,
                 initial_layerdrop_rate: float = 0.5, final_layerdrop_rate: float = 0.05):
        super().__init__()
        if not 0 <= warmup_begin <= warmup_end:
            raise ValueError(f"need 0 <= warmup_begin <= warmup_end, got {warmup_begin}, {warmup_end}")
        self.encoder_pos = CompactRelPositionalEncoding(pos_dim, dropout_rate=0.15, length_factor=1.0)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        step = (warmup_end - warmup_begin) / num_layers
        for i, each in enumerate(self.layers):
            begin = warmup_begin + i * step
            each.bypass.skip_rate = ScheduledFloat((begin, initial_layerdrop_rate),
                                                   (begin + step, final_layerdrop_rate), default=0.0)

    def forward(self, x: Tensor, feature_mask: Tensor | float = 1.0, attn_mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, chunk_size: int = 0,
                lengths: Tensor | None = None) -> Tensor:
        """x (T, N, C) -> (T, N, C). feature_mask: (1, N, C) multiplier applied before and after
        every layer (training; 1.0 in eval); key_padding_mask (N, T) True at padded frames,
        also used to zero them before the convolutions; attn_mask (T, T) or None;
        chunk_size/lengths for the causal convolutions."""
        pos_emb = self.encoder_pos(x)  # (1, 2T - 1, pos_dim)
        x = x * feature_mask
        for layer in self.layers:
            x, _ = layer(x, pos_emb, key_padding_mask, attn_mask, key_padding_mask, chunk_size, lengths)
            x = x * feature_mask
        return x

    def streaming_forward(self, x: Tensor, caches: list[Tensor], left_context: int,
                          key_padding_mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """One chunk x (T, N, C) after ``left_context`` cached frames; caches: 6 per layer
        (LAYER_CACHE_NAMES); key_padding_mask (N, left_context + T). Returns (T, N, C) and the
        new caches."""
        pos_emb = self.encoder_pos(x, left_context)  # (1, L + 2T - 1, pos_dim)
        pad_mask = key_padding_mask[:, left_context:]
        new_caches = []
        for i, layer in enumerate(self.layers):
            x, layer_caches = layer(x, pos_emb, key_padding_mask, None, pad_mask, caches=caches[6 * i : 6 * i + 6])
            new_caches += layer_caches
        return x, new_caches


class DownsampledZipformerStack(nn.Module):
    """A ZipformerStack run at 1/ds of the input frame rate: (T, N, C) -> (T, N, C),
    out = x + (upsample(stack(downsample(x))) - x) * learned scale (``out_combiner``)."""

    def __init__(self, encoder: ZipformerStack, dim: int, downsample: int, dropout: FloatLike, causal: bool):
        super().__init__()
        self.downsample_factor = downsample
        self.downsample = SimpleDownsample(dim, downsample, dropout, causal)
        self.num_layers = encoder.num_layers
        self.encoder = encoder
        self.upsample = SimpleUpsample(dim, downsample)
        self.out_combiner = BypassModule(dim, straight_through_rate=0)

    def forward(self, x: Tensor, feature_mask: Tensor | float = 1.0, attn_mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, chunk_size: int = 0,
                lengths: Tensor | None = None) -> Tensor:
        """As ZipformerStack.forward, with every argument given at the input frame rate
        (lengths (N,) are needed when key_padding_mask is given). chunk_size must be a multiple
        of ds."""
        ds = self.downsample_factor
        y = self.downsample(x, lengths)  # (ceil(T/ds), N, C)
        low_lengths = None if lengths is None else (lengths + ds - 1) // ds
        y = self.encoder(y, feature_mask,
                         None if attn_mask is None else attn_mask[::ds, ::ds],
                         None if key_padding_mask is None else key_padding_mask[:, ::ds],
                         chunk_size // ds if chunk_size > 0 else chunk_size, low_lengths)
        y = self.upsample(y)[: x.size(0)]  # (T, N, C)
        return self.out_combiner(x, y)

    def streaming_forward(self, x: Tensor, caches: list[Tensor], left_context: int, key_padding_mask: Tensor,
                          lengths: Tensor) -> tuple[Tensor, list[Tensor]]:
        """As ZipformerStack.streaming_forward with left_context at the low rate and
        key_padding_mask (N, left_context + ceil(T/ds)) at the low rate; lengths (N,) valid
        frames of x at the input rate."""
        y = self.downsample(x, lengths)
        y, caches = self.encoder.streaming_forward(y, caches, left_context, key_padding_mask)
        y = self.upsample(y)[: x.size(0)]
        return self.out_combiner(x, y), caches

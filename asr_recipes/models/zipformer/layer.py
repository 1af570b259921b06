"""One Zipformer block (Zipformer2EncoderLayer in icefall), time-major (T, N, C):

    w = attention weights of x                                  (computed once, used 3 times)
    y = x + FF1(x)
    y = y + NonlinAttention(y, w[first head])
    y = y + SelfAttention1(y, w)
    y = y + Conv1(y)
    y = y + FF2(y)
    y = Bypass_mid(x, y)                 x + (y - x) * learned per-channel scale
    y = y + SelfAttention2(y, w)
    y = y + Conv2(y)
    y = y + FF3(y)
    out = Bypass(x, BiasNorm(y))

Training adds, each on a schedule of the batch count: whole-utterance skips of the attention,
convolution and FF2/FF3 branches and of the whole layer (the bypass's skip rate), constant
("averaging") weights for the NonlinAttention, and gradient-only balancers and whitening.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor, nn

from asr_recipes.models.zipformer.attention import (
    NonlinAttention, RelPositionMultiheadAttentionWeights, SelfAttention,
)
from asr_recipes.models.zipformer.constraints import Balancer, Whiten, limit_param_value
from asr_recipes.models.zipformer.convolution import ConvolutionModule, FeedforwardModule
from asr_recipes.models.zipformer.scaling import BiasNorm
from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat, whitening_limit

#: Per layer, the streaming caches in this order (icefall's order and layouts; N = batch, L = left
#: context frames of the layer's stack, H = heads, K = conv kernel size).
LAYER_CACHE_NAMES = (
    "cached_key",  # (L, N, H * query_head_dim)
    "cached_nonlin_attn",  # (1, N, L, 3 * C / 4)
    "cached_val1",  # (L, N, H * value_head_dim)
    "cached_val2",  # (L, N, H * value_head_dim)
    "cached_conv1",  # (N, C, K // 2)
    "cached_conv2",  # (N, C, K // 2)
)


class BypassModule(nn.Module):
    """bypass(x, y) = x + (y - x) * scale with a learned per-channel ``bypass_scale``.

    In training the scale is kept in [scale_min, scale_max] (scale_min starts near 1, so early
    on every module must do work), and with probability ``skip_rate`` an utterance skips the
    module (scale 0); with ``straight_through_rate`` it takes y unchanged (scale 1).
    """

    def __init__(self, embed_dim: int, skip_rate: FloatLike = 0.0, straight_through_rate: FloatLike = 0.0,
                 scale_min: FloatLike | None = None, scale_max: FloatLike = 1.0):
        super().__init__()
        self.bypass_scale = nn.Parameter(torch.full((embed_dim,), 0.5))
        self.skip_rate = skip_rate
        self.straight_through_rate = straight_through_rate
        self.scale_min = ScheduledFloat((0.0, 0.9), (20000.0, 0.2), default=0) if scale_min is None else scale_min
        self.scale_max = scale_max

    def _scale(self, batch_size: int) -> Tensor:
        """(C,) in eval; (N, C) or (C,) in training."""
        if not self.training:
            return self.bypass_scale
        scale = limit_param_value(self.bypass_scale, float(self.scale_min), float(self.scale_max))
        skip = float(self.skip_rate)
        if skip != 0.0:
            scale = scale * (torch.rand(batch_size, 1, device=scale.device) > skip)  # (N, C)
        straight = float(self.straight_through_rate)
        if straight != 0.0:
            through = torch.rand(batch_size, 1, device=scale.device) < straight
            scale = torch.maximum(scale, through.to(scale.dtype))
        return scale

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (T, N, C)."""
        return x + (y - x) * self._scale(y.size(1))


class ZipformerLayer(nn.Module):
    """See the module docstring. Sizes: embed_dim C, pos_dim, num_heads H, query/pos/value head
    dims, feedforward_dim (FF1/FF2/FF3 use 3/4, 1, 5/4 of it), cnn_module_kernel K; dropout
    (FF hidden units); causal: chunk-causal convolutions. The *_rate arguments are the
    training schedules (defaults: icefall's)."""

    def __init__(self, embed_dim: int, pos_dim: int, num_heads: int, query_head_dim: int, pos_head_dim: int,
                 value_head_dim: int, feedforward_dim: int, dropout: FloatLike = 0.1, cnn_module_kernel: int = 31,
                 causal: bool = False,
                 attention_skip_rate: FloatLike | None = None, conv_skip_rate: FloatLike | None = None,
                 const_attention_rate: FloatLike | None = None, ff2_skip_rate: FloatLike | None = None,
                 ff3_skip_rate: FloatLike | None = None, bypass_skip_rate: FloatLike | None = None):
        super().__init__()

        def schedule(given, *points, default=0.0):
            return ScheduledFloat(*points, default=default) if given is None else given

        self.embed_dim = embed_dim
        early = ((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0))
        self.attention_skip_rate = schedule(attention_skip_rate, *early)
        self.conv_skip_rate = schedule(conv_skip_rate, *early)
        self.const_attention_rate = schedule(const_attention_rate, (0.0, 0.25), (4000.0, 0.025))
        self.ff2_skip_rate = schedule(ff2_skip_rate, (0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0))
        self.ff3_skip_rate = schedule(ff3_skip_rate, (0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0))
        self.bypass = BypassModule(embed_dim, skip_rate=schedule(bypass_skip_rate, (0.0, 0.5), (4000.0, 0.02)))
        self.bypass_mid = BypassModule(embed_dim)
        self.self_attn_weights = RelPositionMultiheadAttentionWeights(embed_dim, pos_dim, num_heads, query_head_dim,
                                                                      pos_head_dim)
        self.self_attn1 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.self_attn2 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.feed_forward1 = FeedforwardModule(embed_dim, feedforward_dim * 3 // 4, dropout)
        self.feed_forward2 = FeedforwardModule(embed_dim, feedforward_dim, dropout)
        self.feed_forward3 = FeedforwardModule(embed_dim, feedforward_dim * 5 // 4, dropout)
        self.nonlin_attention = NonlinAttention(embed_dim, hidden_channels=3 * embed_dim // 4)
        self.conv_module1 = ConvolutionModule(embed_dim, cnn_module_kernel, causal)
        self.conv_module2 = ConvolutionModule(embed_dim, cnn_module_kernel, causal)
        # Unused: icefall's layer has this parameter too (left from an earlier version); kept so
        # that its checkpoints load and parameter counts agree, frozen so that optimizers and DDP
        # ignore it.
        self.bypass_scale = nn.Parameter(torch.full((embed_dim,), 0.5), requires_grad=False)
        self.norm = BiasNorm(embed_dim)
        self.balancer1 = Balancer(embed_dim, channel_dim=-1, min_positive=0.45, max_positive=0.55, min_abs=0.2,
                                  max_abs=4.0)
        self.balancer_na = Balancer(embed_dim, channel_dim=-1, min_positive=0.3, max_positive=0.7,
                                    min_abs=ScheduledFloat((0.0, 0.004), (4000.0, 0.02)), prob=0.05)
        # FF2/FF3 outputs must not stay too small relative to the residual; slow and rare fixes
        self.balancer_ff2 = Balancer(embed_dim, channel_dim=-1, min_positive=0.3, max_positive=0.7,
                                     min_abs=ScheduledFloat((0.0, 0.0), (4000.0, 0.1), default=0.0), max_abs=2.0,
                                     prob=0.05)
        self.balancer_ff3 = Balancer(embed_dim, channel_dim=-1, min_positive=0.3, max_positive=0.7,
                                     min_abs=ScheduledFloat((0.0, 0.0), (4000.0, 0.2), default=0.0), max_abs=4.0,
                                     prob=0.05)
        self.whiten = Whiten(num_groups=1, whitening_limit=whitening_limit(4.0, ratio=3.0), prob=(0.025, 0.25),
                             grad_scale=0.01)
        self.balancer2 = Balancer(embed_dim, channel_dim=-1, min_positive=0.45, max_positive=0.55, min_abs=0.1,
                                  max_abs=4.0)

    def _utterance_keep(self, x: Tensor, rate: FloatLike) -> Tensor | None:
        """(N, 1) 0/1 mask dropping whole utterances with probability ``rate`` (training only)."""
        p = float(rate) if self.training else 0.0
        if p == 0.0:
            return None
        return (torch.rand(x.size(1), 1, device=x.device) > p).to(x.dtype)

    @staticmethod
    def _masked(y: Tensor, keep: Tensor | None) -> Tensor:
        return y if keep is None else y * keep

    def _averaging_weights(self, weights: Tensor) -> Tensor:
        """Uniform weights over the keys each query may see (the masked scores give exact 0s)."""
        visible = (weights > 0.0).to(weights.dtype)
        return visible / visible.sum(dim=-1, keepdim=True)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, pad_mask: Tensor | None = None, chunk_size: int = 0,
                lengths: Tensor | None = None,
                caches: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor] | None]:
        """
        Args:
            x: (T, N, C).  pos_emb: (1, L + 2T - 1, pos_dim).
            key_padding_mask: (N, L + T) True at keys to ignore.  attn_mask: (T, L + T) or None.
            pad_mask: (N, T) True at padded frames of x (zeroed before the convolutions).
            chunk_size, lengths: chunking of the causal convolutions (see ChunkCausalDepthwiseConv1d).
            caches: streaming (eval mode): this layer's caches in LAYER_CACHE_NAMES order.
        Returns:
            (T, N, C), and the new caches (None without caches).
        """
        streaming = caches is not None
        c_key, c_nonlin, c_val1, c_val2, c_conv1, c_conv2 = caches if streaming else [None] * 6
        weights, c_key = self.self_attn_weights(x, pos_emb, key_padding_mask, attn_mask, c_key)  # (H, N, T, S)

        y = x + self.feed_forward1(x)
        attn_keep = self._utterance_keep(y, self.attention_skip_rate)
        first_head = weights[0:1]
        if self.training and random.random() < float(self.const_attention_rate):
            first_head = self._averaging_weights(first_head)  # nudges it towards averaging over time
        na, c_nonlin = self.nonlin_attention(y, first_head, c_nonlin)
        y = y + self._masked(self.balancer_na(na), attn_keep)
        sa, c_val1 = self.self_attn1(y, weights, c_val1)
        y = y + self._masked(sa, attn_keep)
        conv, c_conv1 = self.conv_module1(y, pad_mask, chunk_size, lengths, c_conv1)
        y = y + self._masked(conv, self._utterance_keep(y, self.conv_skip_rate))
        y = y + self._masked(self.balancer_ff2(self.feed_forward2(y)), self._utterance_keep(y, self.ff2_skip_rate))

        y = self.bypass_mid(x, y)

        sa, c_val2 = self.self_attn2(y, weights, c_val2)
        y = y + self._masked(sa, attn_keep)
        conv, c_conv2 = self.conv_module2(y, pad_mask, chunk_size, lengths, c_conv2)
        y = y + self._masked(conv, self._utterance_keep(y, self.conv_skip_rate))
        y = y + self._masked(self.balancer_ff3(self.feed_forward3(y)), self._utterance_keep(y, self.ff3_skip_rate))

        y = self.norm(self.balancer1(y))
        y = self.whiten(self.balancer2(self.bypass(x, y)))
        return y, ([c_key, c_nonlin, c_val1, c_val2, c_conv1, c_conv2] if streaming else None)

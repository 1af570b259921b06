"""Zipformer attention: one set of attention weights per layer, used by three modules.

Inside the encoder stacks tensors are time-major, (T, N, C), as in icefall's code (the
streaming caches keep that layout). Each layer computes its weights once
(RelPositionMultiheadAttentionWeights) and shares them between NonlinAttention (first head
only) and two SelfAttention modules.

Queries may be fewer than keys: in streaming, the T frames of a chunk attend to S = L + T
keys, the L cached frames before the chunk and then the chunk itself; query i sits at key
position L + i. Whole utterances have L = 0.

The score of query i and key j is q_i . k_j + p_i . W r(j - (L + i)), with r(d) the compact
positional encoding of offset d (CompactRelPositionalEncoding). There is no 1/sqrt(d)
factor: the input projection's initial scale takes its place.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor, nn

from asr_recipes.models.attention import rel_shift
from asr_recipes.models.zipformer.constraints import Balancer, Whiten, penalize_abs_values_gt
from asr_recipes.models.zipformer.scaling import ScheduledDropout, scaled_linear
from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat, whitening_limit

#: Score of hidden (masked) keys: exp(-1000) is exactly 0 in float32, and a query whose keys
#: are all hidden still gets finite (uniform) weights instead of NaN.
MASKED_SCORE = -1000.0


class CompactRelPositionalEncoding(nn.Module):
    """Encodings of relative offsets that separate small offsets finely and large ones coarsely.

    An offset d is compressed logarithmically, c = sqrt(D) sign(d) log(1 + |d| / sqrt(D))
    (slope 1 at d = 0), then mapped into (-pi/2, pi/2) by atan(c / s), s = length_factor D / (2 pi);
    the encoding is cos(k theta), sin(k theta) for k = 1 .. D/2, with the last entry replaced by
    a constant 1 (a bias term for the projection that follows).

    forward(x (T, N, *), left_context=L) -> (1, L + 2T - 1, D): rows for offsets -(L + T - 1)
    .. T - 1 in increasing order (row r: offset r - (L + T - 1)), after dropout.
    """

    def __init__(self, embed_dim: int, dropout_rate: FloatLike, length_factor: float = 1.0):
        super().__init__()
        if embed_dim % 2 or length_factor < 1.0:
            raise ValueError(f"positional encoding needs an even dim and length_factor >= 1, "
                             f"got {embed_dim} and {length_factor}")
        self.embed_dim = embed_dim
        self.length_factor = length_factor
        self.dropout = ScheduledDropout(dropout_rate)
        self._table = torch.empty(0, embed_dim)  # rows for offsets -(M-1) .. M-1, grown on demand

    def _encode(self, offsets: Tensor) -> Tensor:
        """(R,) float32 offsets -> (R, D) float32 encodings."""
        D = self.embed_dim
        c = math.sqrt(D)
        compressed = c * offsets.sign() * ((offsets.abs() + c).log() - math.log(c))
        theta = (compressed / (self.length_factor * D / (2.0 * math.pi))).atan()  # (R,)
        angles = theta[:, None] * torch.arange(1, D // 2 + 1, device=offsets.device)  # (R, D/2)
        pe = torch.stack([angles.cos(), angles.sin()], dim=-1).reshape(-1, D)  # interleaved cos, sin
        pe[:, -1] = 1.0
        return pe

    def forward(self, x: Tensor, left_context: int = 0) -> Tensor:
        T = x.size(0)
        span = T + left_context  # offsets run from -(span - 1) to T - 1
        if torch.onnx.is_in_onnx_export():
            # the graph computes the rows of this T (a table would be a constant of the traced size)
            offsets = torch.arange(-(span - 1), T, device=x.device, dtype=torch.float32)
            return self.dropout(self._encode(offsets).to(x.dtype).unsqueeze(0))
        M = (self._table.size(0) + 1) // 2
        if M < span or self._table.device != x.device:
            M = max(M, span)
            offsets = torch.arange(-(M - 1), M, device=x.device, dtype=torch.float32)
            self._table = self._encode(offsets)  # (2M - 1, D)
        center = M - 1  # row of offset 0
        pos_emb = self._table[center - (span - 1) : center + T].to(x.dtype)  # (L + 2T - 1, D)
        return self.dropout(pos_emb.unsqueeze(0))


class _SoftmaxFunction(torch.autograd.Function):
    """softmax whose backward keeps the output in the autocast dtype (half the memory of the
    float32 output autocast's own softmax keeps); the backward computes in float32 (or float64)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int):
        y = x.softmax(dim=dim)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            y = y.to(torch.get_autocast_dtype(device))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        dtype = torch.promote_types(grad.dtype, torch.float32)  # half precision: backward in float32
        y, g = y.to(dtype), grad.to(dtype)
        gy = g * y
        return (gy - y * gy.sum(dim=ctx.dim, keepdim=True)).to(grad.dtype), None


def softmax(x: Tensor, dim: int) -> Tensor:
    """x.softmax(dim), with the memory-saving backward when x needs a gradient."""
    if x.requires_grad and torch.is_grad_enabled():
        return _SoftmaxFunction.apply(x, dim)
    return x.softmax(dim=dim)


def _relative_to_absolute(pos_scores: Tensor, num_keys: int) -> Tensor:
    """(H, N, T, L + 2T - 1) scores per relative offset -> (H, N, T, S = L + T) per key.

    Entry (i, j) takes column T - 1 - i + j, the offset of key j from query L + i: the
    Conformer's rel_shift (a strided view in PyTorch, a gather in an exported ONNX graph).
    """
    out = rel_shift(pos_scores)  # (H, N, T, S)
    assert out.size(3) == num_keys, (tuple(pos_scores.shape), num_keys)
    return out


class RelPositionMultiheadAttentionWeights(nn.Module):
    """x (T, N, C) -> attention weights (H, N, T, S), rows summing to 1.

    Args:
        embed_dim: C.  pos_dim: width of the positional encodings.  num_heads: H.
        query_head_dim: query/key width per head.  pos_head_dim: positional query width per head.
        dropout: on the weights (training).
        pos_emb_skip_rate: in training, the probability of leaving out the positional scores
            for a whole call (a schedule).
    """

    def __init__(self, embed_dim: int, pos_dim: int, num_heads: int, query_head_dim: int, pos_head_dim: int,
                 dropout: float = 0.0, pos_emb_skip_rate: FloatLike | None = None):
        super().__init__()
        self.num_heads, self.query_head_dim, self.pos_head_dim = num_heads, query_head_dim, pos_head_dim
        self.dropout = dropout
        self.pos_emb_skip_rate = (ScheduledFloat((0.0, 0.5), (4000.0, 0.0)) if pos_emb_skip_rate is None
                                  else pos_emb_skip_rate)
        in_proj_dim = (2 * query_head_dim + pos_head_dim) * num_heads  # queries, keys, positional queries
        # the initial scale stands in for the usual 1/sqrt(d) of the scores, split between q and k
        self.in_proj = scaled_linear(embed_dim, in_proj_dim, initial_scale=query_head_dim**-0.25)
        self.whiten_keys = Whiten(num_groups=num_heads, whitening_limit=whitening_limit(3.0), prob=(0.025, 0.25),
                                  grad_scale=0.025)
        # keys' mean cannot change the weights, so its gradient is zero and rounding noise could
        # let it drift: keep it near 0 now and then
        self.balance_keys = Balancer(query_head_dim * num_heads, channel_dim=-1, min_positive=0.4, max_positive=0.6,
                                     min_abs=0.0, max_abs=100.0, prob=0.025)
        self.linear_pos = scaled_linear(pos_dim, num_heads * pos_head_dim, bias=False, initial_scale=0.05)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, cached_key: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """
        Args:
            x: (T, N, C).  pos_emb: (1, L + 2T - 1, pos_dim).
            key_padding_mask: (N, S) True at keys to ignore (padding, empty cache slots).
            attn_mask: (T, S) True where query i may not see key j (chunk masks).
            cached_key: (L, N, H * query_head_dim) keys of the L frames before x (streaming).
        Returns:
            weights (H, N, T, S), and the new key cache (the last L keys) if cached_key was given.
        """
        T, N, _ = x.shape
        H, dq, dp = self.num_heads, self.query_head_dim, self.pos_head_dim
        proj = self.in_proj(x)  # (T, N, H * (2 dq + dp))
        q, k, p = proj.split([H * dq, H * dq, H * dp], dim=-1)
        k = self.whiten_keys(self.balance_keys(k))  # identity in the forward pass
        new_cache = None
        if cached_key is not None:
            k = torch.cat([cached_key, k], dim=0)  # (S, N, H dq)
            new_cache = k[k.size(0) - cached_key.size(0) :]
        S = k.size(0)
        q = q.reshape(T, N, H, dq).permute(2, 1, 0, 3)  # (H, N, T, dq)
        k = k.reshape(S, N, H, dq).permute(2, 1, 3, 0)  # (H, N, dq, S)
        scores = torch.matmul(q, k)  # (H, N, T, S)

        if not (self.training and random.random() < float(self.pos_emb_skip_rate)):
            p = p.reshape(T, N, H, dp).permute(2, 1, 0, 3)  # (H, N, T, dp)
            pos = self.linear_pos(pos_emb)  # (1, R, H dp), R = L + 2T - 1
            pos = pos.reshape(-1, pos.size(1), H, dp).permute(2, 0, 3, 1)  # (H, 1, dp, R)
            scores = scores + _relative_to_absolute(torch.matmul(p, pos), S)  # (H, N, T, S)

        if self.training and random.random() < 0.1:
            # a failsafe against runaway scores, not a regulariser: only far outside normal values
            scores = penalize_abs_values_gt(scores, limit=25.0, penalty=1.0e-04)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask, MASKED_SCORE)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, :], MASKED_SCORE)  # (N, 1, S) over queries
        weights = softmax(scores, dim=-1)
        weights = nn.functional.dropout(weights, p=self.dropout, training=self.training)
        return weights, new_cache


class SelfAttention(nn.Module):
    """(T, N, C), weights (H, N, T, S) -> (T, N, C): per-head weighted sums of projected values."""

    def __init__(self, embed_dim: int, num_heads: int, value_head_dim: int):
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, num_heads * value_head_dim)
        self.out_proj = scaled_linear(num_heads * value_head_dim, embed_dim, initial_scale=0.05)
        self.whiten = Whiten(num_groups=1, whitening_limit=whitening_limit(7.5, ratio=3.0), prob=(0.025, 0.25),
                             grad_scale=0.01)

    def forward(self, x: Tensor, weights: Tensor, cached_val: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """cached_val: (L, N, H * value_head_dim) values of the L frames before x (streaming).
        Returns the output and the new value cache (None without cached_val)."""
        T, N, _ = x.shape
        H, S = weights.size(0), weights.size(3)
        v = self.in_proj(x)  # (T, N, H dv)
        new_cache = None
        if cached_val is not None:
            v = torch.cat([cached_val, v], dim=0)  # (S, N, H dv)
            new_cache = v[S - cached_val.size(0) :]
        v = v.reshape(S, N, H, -1).permute(2, 1, 0, 3)  # (H, N, S, dv)
        out = torch.matmul(weights, v)  # (H, N, T, dv)
        out = out.permute(2, 1, 0, 3).reshape(T, N, -1)  # (T, N, H dv)
        return self.whiten(self.out_proj(out)), new_cache


class NonlinAttention(nn.Module):
    """(T, N, C), weights (1, N, T, S) -> (T, N, C): out_proj((weights @ (x * tanh(s))) * y)
    with s, x, y three projections of the input: attention weights used in place of a
    convolution's kernel, gated before and after."""

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.in_proj = nn.Linear(channels, hidden_channels * 3)
        # the tanh gate learns better when its input is not too small (trained models show
        # |s| of 3 and more)
        self.balancer = Balancer(hidden_channels, channel_dim=-1,
                                 min_positive=ScheduledFloat((0.0, 0.25), (20000.0, 0.05)),
                                 max_positive=ScheduledFloat((0.0, 0.75), (20000.0, 0.95)),
                                 min_abs=0.5, max_abs=5.0)
        self.out_proj = scaled_linear(hidden_channels, channels, initial_scale=0.05)
        self.whiten1 = Whiten(num_groups=1, whitening_limit=whitening_limit(5.0), prob=(0.025, 0.25),
                              grad_scale=0.01)
        self.whiten2 = Whiten(num_groups=1, whitening_limit=whitening_limit(5.0, ratio=3.0), prob=(0.025, 0.25),
                              grad_scale=0.01)

    def forward(self, x: Tensor, weights: Tensor, cached_x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """cached_x: (H, N, L, hidden / H) gated inputs of the L frames before x (streaming).
        Returns the output and the new cache (None without cached_x)."""
        T, N, _ = x.shape
        H = weights.size(0)
        s, v, y = self.in_proj(x).chunk(3, dim=-1)  # 3 x (T, N, hidden)
        v = self.whiten1(v) * torch.tanh(self.balancer(s))  # (T, N, hidden)
        v = v.reshape(T, N, H, -1).permute(2, 1, 0, 3)  # (H, N, T, hidden / H)
        new_cache = None
        if cached_x is not None:
            v = torch.cat([cached_x, v], dim=2)  # (H, N, S, hidden / H)
            new_cache = v[:, :, v.size(2) - cached_x.size(2) :]
        out = torch.matmul(weights, v)  # (H, N, T, hidden / H)
        out = out.permute(2, 1, 0, 3).reshape(T, N, -1) * y  # (T, N, hidden)
        return self.whiten2(self.out_proj(out)), new_cache

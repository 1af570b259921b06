"""Relative-position multi-head self-attention (Transformer-XL style).

The score between query frame i and key frame j is

    q_i . k_j  +  u . k_j  +  q_i . W_pos r_{i-j}  +  v . W_pos r_{i-j}
    \\________content________/  \\____________position_____________/

where r_{i-j} is a sinusoid of the *relative* offset i - j and u, v are learned
per-head biases. This is the formulation of Transformer-XL (Dai et al. 2019) as used
by ESPnet's and icefall's Conformer encoders. Relative positions let the encoder
generalise to utterance lengths it never saw in training.

Layout of the positional embedding: row k of the (2T-1, D) table encodes offset
T-1-k, i.e. offsets T-1, T-2, ..., 0, ..., -(T-1) from top to bottom.
"""

import math

import torch
from torch import Tensor, nn


class RelPositionalEncoding(nn.Module):
    """Scales the input and builds sinusoids for every relative offset.

    forward(x (N, T, D)) -> (x * sqrt(D) (N, T, D), pos_emb (1, 2T-1, D)), both after dropout.
    The sqrt(D) scale keeps the content stream large relative to the unit-amplitude
    positional sinusoids, as in the original Transformer.
    """

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for sin/cos position pairs, got {d_model}")
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def sinusoids(self, T: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """(2T-1, D): row k encodes relative offset T-1-k."""
        offsets = torch.arange(T - 1, -T, -1, device=device, dtype=torch.float32)  # (2T-1,)
        inv_freq = torch.exp(
            torch.arange(0, self.d_model, 2, device=device, dtype=torch.float32)
            * (-math.log(10000.0) / self.d_model)
        )  # (D/2,)
        angles = offsets[:, None] * inv_freq[None, :]  # (2T-1, D/2)
        pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (2T-1, D/2, 2)
        return pe.reshape(2 * T - 1, self.d_model).to(dtype)  # interleaved sin, cos

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pos_emb = self.sinusoids(x.size(1), x.device, x.dtype).unsqueeze(0)  # (1, 2T-1, D)
        return self.dropout(x * self.xscale), self.dropout(pos_emb)


def rel_shift(scores: Tensor) -> Tensor:
    """(N, H, T, 2T-1) scores against offsets -> (N, H, T, T) scores against key frames.

    Query i and key j have offset i - j, stored at column T-1-i+j. Element (i, j) of the
    result therefore sits at flat offset i*(2T-1) + T-1-i+j = (T-1) + i*(2T-2) + j in
    each contiguous (T, 2T-1) block: a strided view with row stride 2T-2, no copy.
    """
    N, H, T, P = scores.shape
    assert P == 2 * T - 1, f"expected 2T-1 = {2 * T - 1} offsets, got {P}"
    scores = scores.contiguous()
    sN, sH, sT, _ = scores.stride()
    return scores.as_strided((N, H, T, T), (sN, sH, sT - 1, 1), storage_offset=scores.storage_offset() + T - 1)


class RelPositionMultiheadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions.

    forward(x (N, T, D), pos_emb (1, 2T-1, D), key_padding_mask (N, T) bool, True = pad)
    -> (N, T, D). Padded keys get zero weight, so a valid query's output does not depend
    on padded frames. Every row must have at least one valid frame.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)  # no bias: a constant would act like u/v
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.head_dim))  # content bias (u)
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.head_dim))  # position bias (v)
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor) -> Tensor:
        N, T, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(N, T, 3, H, Dh).unbind(dim=2)  # 3 x (N, T, H, Dh)
        k = k.transpose(1, 2)  # (N, H, T, Dh)
        v = v.transpose(1, 2)  # (N, H, T, Dh)
        p = self.linear_pos(pos_emb).view(1, 2 * T - 1, H, Dh).transpose(1, 2)  # (1, H, 2T-1, Dh)

        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (N, H, T, Dh)
        q_v = (q + self.pos_bias_v).transpose(1, 2)  # (N, H, T, Dh)
        content = q_u @ k.transpose(-2, -1)  # (N, H, T, T)
        position = rel_shift(q_v @ p.transpose(-2, -1))  # (N, H, T, 2T-1) -> (N, H, T, T)
        scores = (content + position) / math.sqrt(Dh)  # (N, H, T, T)

        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = self.dropout(scores.softmax(dim=-1))  # (N, H, T, T)
        y = weights @ v  # (N, H, T, Dh)
        y = y.transpose(1, 2).reshape(N, T, D)  # (N, T, D): heads side by side
        return self.out(y)

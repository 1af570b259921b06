"""Relative-position multi-head self-attention (Transformer-XL style).

The score between query frame i and key frame j is

    q_i . k_j  +  u . k_j  +  q_i . W_pos r_{i-j}  +  v . W_pos r_{i-j}
    \\________content________/  \\____________position_____________/

where r_{i-j} is a sinusoid of the *relative* offset i - j and u, v are learned
per-head biases. This is the formulation of Transformer-XL (Dai et al. 2019) as used
by ESPnet's and icefall's Conformer encoders. Relative positions let the encoder
generalise to utterance lengths it never saw in training.

Queries may be fewer than keys: in streaming, the Tq frames of a chunk attend to Tk =
left + Tq keys, the cached left-context frames followed by the chunk itself, so query i
sits at key position i + Tk - Tq. Offsets then run from Tk-1 (the newest query against the
oldest key) down to -(Tq-1). Layout of the positional embedding: row k of the
(Tk + Tq - 1, D) table encodes offset Tk-1-k; whole utterances have Tq = Tk = T, a
(2T-1, D) table with offsets T-1, ..., 0, ..., -(T-1) from top to bottom.
"""

import math

import torch
from torch import Tensor, nn


class RelPositionalEncoding(nn.Module):
    """Scales the input and builds sinusoids for every relative offset.

    forward(x (N, T, D), left_context=0) -> (x * sqrt(D) (N, T, D), pos_emb (1, left+2T-1, D)),
    both after dropout: T queries against left + T keys (left > 0 only in streaming, for
    the cached frames before a chunk). The sqrt(D) scale keeps the content stream large
    relative to the unit-amplitude positional sinusoids, as in the original Transformer.
    """

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for sin/cos position pairs, got {d_model}")
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def sinusoids(self, T: int, device: torch.device, dtype: torch.dtype, num_keys: int | None = None) -> Tensor:
        """(Tk + T - 1, D) for T queries and Tk = num_keys (default T) keys: row k encodes
        relative offset Tk-1-k."""
        Tk = T if num_keys is None else num_keys
        offsets = torch.arange(Tk - 1, -T, -1, device=device, dtype=torch.float32)  # (Tk+T-1,)
        inv_freq = torch.exp(
            torch.arange(0, self.d_model, 2, device=device, dtype=torch.float32)
            * (-math.log(10000.0) / self.d_model)
        )  # (D/2,)
        angles = offsets[:, None] * inv_freq[None, :]  # (2T-1, D/2)
        pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (2T-1, D/2, 2)
        return pe.reshape(Tk + T - 1, self.d_model).to(dtype)  # interleaved sin, cos

    def forward(self, x: Tensor, left_context: int = 0) -> tuple[Tensor, Tensor]:
        T = x.size(1)
        pos_emb = self.sinusoids(T, x.device, x.dtype, num_keys=left_context + T).unsqueeze(0)  # (1, Tk+T-1, D)
        return self.dropout(x * self.xscale), self.dropout(pos_emb)


def rel_shift(scores: Tensor) -> Tensor:
    """(N, H, Tq, Tk+Tq-1) scores against offsets -> (N, H, Tq, Tk) scores against key frames.

    Query i (key position i + Tk - Tq) and key j have offset i + Tk - Tq - j, stored at
    column Tk-1 - (i + Tk - Tq - j) = Tq-1-i+j. With P = Tk+Tq-1 columns, element (i, j)
    therefore sits at flat offset i*P + Tq-1-i+j = (Tq-1) + i*(P-1) + j of each contiguous
    (Tq, P) block: a strided view with row stride P-1, no copy. ONNX has no strided views,
    so while exporting the same elements are gathered instead (same values, one copy).
    """
    N, H, Tq, P = scores.shape
    Tk = P - Tq + 1
    assert Tk >= Tq, f"expected Tk + Tq - 1 offsets with Tk >= Tq = {Tq}, got {P}"
    if torch.onnx.is_in_onnx_export():
        i = torch.arange(Tq, device=scores.device)[:, None]
        j = torch.arange(Tk, device=scores.device)[None, :]
        return scores.gather(3, (Tq - 1 - i + j).expand(N, H, Tq, Tk))
    scores = scores.contiguous()
    sN, sH, sT, _ = scores.stride()
    return scores.as_strided((N, H, Tq, Tk), (sN, sH, sT - 1, 1), storage_offset=scores.storage_offset() + Tq - 1)


class RelPositionMultiheadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions.

    forward(x (N, Tq, D), pos_emb (1, Tk+Tq-1, D), mask (N, 1 or Tq, Tk) bool,
    keys (N, Tk, D) or None) -> (N, Tq, D).

    mask is True where a query may not see a key: (N, 1, Tk) hides padded keys from every
    query, (N, Tq, Tk) also limits each query (chunked attention). Hidden keys get zero
    weight, so a query's output does not depend on them; every query must see at least
    one key. Keys and values come from ``keys`` (default: x itself, Tk = Tq). In streaming,
    keys are the cached left-context inputs followed by x, so x's frames are the last Tq keys.
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

    def forward(self, x: Tensor, pos_emb: Tensor, mask: Tensor, keys: Tensor | None = None) -> Tensor:
        N, Tq, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        keys = x if keys is None else keys  # (N, Tk, D), x being its last Tq frames
        Tk = keys.size(1)
        # One projection of all keys; the queries are the rows of x (the last Tq).
        q, k, v = self.qkv(keys).view(N, Tk, 3, H, Dh).unbind(dim=2)  # 3 x (N, Tk, H, Dh)
        q = q[:, Tk - Tq :]  # (N, Tq, H, Dh)
        k = k.transpose(1, 2)  # (N, H, Tk, Dh)
        v = v.transpose(1, 2)  # (N, H, Tk, Dh)
        p = self.linear_pos(pos_emb).view(1, Tk + Tq - 1, H, Dh).transpose(1, 2)  # (1, H, Tk+Tq-1, Dh)

        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (N, H, Tq, Dh)
        q_v = (q + self.pos_bias_v).transpose(1, 2)  # (N, H, Tq, Dh)
        content = q_u @ k.transpose(-2, -1)  # (N, H, Tq, Tk)
        position = rel_shift(q_v @ p.transpose(-2, -1))  # (N, H, Tq, Tk+Tq-1) -> (N, H, Tq, Tk)
        scores = (content + position) / math.sqrt(Dh)  # (N, H, Tq, Tk)

        scores = scores.masked_fill(mask[:, None], float("-inf"))  # mask broadcast over heads
        weights = self.dropout(scores.softmax(dim=-1))  # (N, H, Tq, Tk)
        y = weights @ v  # (N, H, Tq, Dh)
        y = y.transpose(1, 2).reshape(N, Tq, D)  # (N, Tq, D): heads side by side
        return self.out(y)

"""Relative-position attention against an element-by-element Transformer-XL reference."""

import math

import torch

from asr_recipes.models.attention import RelPositionalEncoding, RelPositionMultiheadAttention, rel_shift


def sinusoid(offset: float, d_model: int) -> torch.Tensor:
    """Transformer sinusoid of one position: even dims sin, odd dims cos."""
    pe = torch.empty(d_model, dtype=torch.float64)
    for m in range(d_model // 2):
        angle = offset / 10000 ** (2 * m / d_model)
        pe[2 * m], pe[2 * m + 1] = math.sin(angle), math.cos(angle)
    return pe


def test_sinusoid_rows_encode_offsets_from_T_minus_1_down():
    enc = RelPositionalEncoding(d_model=12, dropout=0.0)
    T = 5
    table = enc.sinusoids(T, torch.device("cpu"), torch.float64)
    assert table.shape == (2 * T - 1, 12)
    for k in range(2 * T - 1):
        torch.testing.assert_close(table[k], sinusoid(T - 1 - k, 12), atol=1e-6, rtol=0)


def test_rel_shift_picks_offset_i_minus_j():
    T = 6
    full = torch.randn(2, 3, T, 2 * T - 1)
    shifted = rel_shift(full)
    assert shifted.shape == (2, 3, T, T)
    for i in range(T):
        for j in range(T):
            # offset i - j lives in column T-1-(i-j)
            assert torch.equal(shifted[:, :, i, j], full[:, :, i, T - 1 - i + j])


def test_rel_shift_with_fewer_queries_than_keys():
    Tq, Tk = 3, 7  # streaming: 4 cached frames, then a chunk of 3; query i is key position i + 4
    full = torch.randn(2, 3, Tq, Tk + Tq - 1)
    shifted = rel_shift(full)
    assert shifted.shape == (2, 3, Tq, Tk)
    for i in range(Tq):
        for j in range(Tk):
            offset = i + Tk - Tq - j  # row Tk-1-offset of the table encodes it
            assert torch.equal(shifted[:, :, i, j], full[:, :, i, Tk - 1 - offset])


def reference_attention(att: RelPositionMultiheadAttention, x, key_padding_mask, keys=None):
    """Loop over (n, h, i, j): score = (q_i + u).k_j + (q_i + v).W_pos r(i' - j), with query i at
    key position i' = i + Tk - Tq (keys = x unless given)."""
    keys = x if keys is None else keys
    N, T, D = x.shape
    Tk = keys.size(1)
    H, Dh = att.num_heads, att.head_dim
    Wq, Wk, Wv = att.qkv.weight.double().split(D)
    bq, bk, bv = att.qkv.bias.double().split(D)
    x, keys = x.double(), keys.double()
    q, k, v = x @ Wq.T + bq, keys @ Wk.T + bk, keys @ Wv.T + bv  # (N, T, D), (N, Tk, D) x 2
    out = torch.zeros(N, T, D, dtype=torch.float64)
    for n in range(N):
        for h in range(H):
            sl = slice(h * Dh, (h + 1) * Dh)
            u, vb = att.pos_bias_u[h].double(), att.pos_bias_v[h].double()
            scores = torch.full((T, Tk), -math.inf, dtype=torch.float64)
            for i in range(T):
                for j in range(Tk):
                    if key_padding_mask[n, j]:
                        continue
                    r = att.linear_pos.weight.double()[sl] @ sinusoid(i + Tk - T - j, D)  # (Dh,)
                    scores[i, j] = ((q[n, i, sl] + u) @ k[n, j, sl] + (q[n, i, sl] + vb) @ r) / math.sqrt(Dh)
            out[n, :, sl] = scores.softmax(-1) @ v[n, :, sl]
    return out @ att.out.weight.double().T + att.out.bias.double()


def test_attention_matches_elementwise_reference_with_padding():
    torch.manual_seed(0)
    D, H, T = 8, 2, 5
    att = RelPositionMultiheadAttention(D, H, dropout=0.0).double()
    enc = RelPositionalEncoding(D, dropout=0.0)
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    _, pos_emb = enc(x)
    got = att(x, pos_emb, mask[:, None, :])  # (N, 1, T): padded keys hidden from every query
    torch.testing.assert_close(got, reference_attention(att, x, mask), atol=1e-6, rtol=1e-6)  # sinusoids are built in float32


def test_attention_to_cached_keys_matches_elementwise_reference():
    torch.manual_seed(1)
    D, H, L, T = 8, 2, 4, 3  # 4 cached frames before a chunk of 3
    att = RelPositionMultiheadAttention(D, H, dropout=0.0).double()
    enc = RelPositionalEncoding(D, dropout=0.0)
    cache, x = torch.randn(2, L, D, dtype=torch.float64), torch.randn(2, T, D, dtype=torch.float64)
    keys = torch.cat([cache, x], dim=1)  # (N, L+T, D)
    mask = torch.zeros(2, L + T, dtype=torch.bool)
    mask[1, :2] = True  # stream 1 has only 2 cached frames so far
    _, pos_emb = enc(x, left_context=L)
    assert pos_emb.shape == (1, L + 2 * T - 1, D)
    got = att(x, pos_emb, mask[:, None, :], keys=keys)
    torch.testing.assert_close(got, reference_attention(att, x, mask, keys), atol=1e-6, rtol=1e-6)

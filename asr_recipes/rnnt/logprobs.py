"""Arc log-probabilities (px, py) of the transducer lattice, from three kinds of joiner output.

All functions return ``(px, py)`` for :func:`mutual_information_recursion`:

* px: (B, S, T+1) for ``rnnt_type="regular"`` (column T, and column t_end[b] when a boundary is
  given, are -inf: no symbol may be emitted on the one-past-last frame), else (B, S, T).
  px[b, s, t] = log P(symbols[b, s] | s symbols emitted, frame t).
* py: (B, S+1, T). py[b, s, t] = log P(blank | s symbols emitted, frame t).

For ``rnnt_type="constrained"`` a symbol arc also pays the blank of the next context on the same
frame: px += py[:, 1:, :]. Conventions (shapes, argument order, defaults) follow k2.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from .checks import check_boundary, check_ndim, check_rnnt_type, check_symbols, check_termination_symbol
from .fused_logprobs import window_logprobs
from .mutual_information import NEG_INF, _compute_dtype


def _float(x: Tensor) -> Tensor:
    """Losses are computed in float32 at least: half-precision inputs are upcast (autograd-safe)."""
    return x.to(_compute_dtype(x.dtype))


def fix_for_boundary(px: Tensor, boundary: Optional[Tensor] = None) -> Tensor:
    """Regular transducers: writes -inf into px[b, :, t_end[b]] (in place) and returns px.

    Without it a path could emit symbols on frame t_end, one past the utterance's last frame.
    With boundary None, column T is already -inf by construction.
    """
    if boundary is None:
        return px
    B, S, T1 = px.shape
    index = boundary[:, 3].reshape(B, 1, 1).expand(B, S, 1)
    return px.scatter_(2, index, NEG_INF)


def _finish(px: Tensor, py: Tensor, boundary: Optional[Tensor], rnnt_type: str) -> Tuple[Tensor, Tensor]:
    """px (B, S, T), py (B, S+1, T) -> the lattice of the module docstring.

    Regular lattices get their -inf column(s) only here, after all arithmetic on px: scaling or
    subtracting on a -inf column would give NaN (0 * -inf) or +inf (negative scale).
    """
    if rnnt_type == "regular":
        px = fix_for_boundary(_append_neg_inf_column(px), boundary)
    elif rnnt_type == "constrained":
        px = px + py[:, 1:, :]
    return px.contiguous(), py.contiguous()


def _append_neg_inf_column(px: Tensor) -> Tensor:
    """(B, S, T) -> (B, S, T+1) with -inf in the last column (regular lattices)."""
    B, S, _ = px.shape
    return torch.cat([px, px.new_full((B, S, 1), NEG_INF)], dim=2)


def _check_lm_am(lm: Tensor, am: Tensor, symbols: Tensor, termination_symbol: int, rnnt_type: str):
    check_rnnt_type(rnnt_type)
    check_ndim("lm", lm, 3, "(B, S+1, C)")
    check_ndim("am", am, 3, "(B, T, C)")
    B, T, C = am.shape
    if lm.shape[0] != B or lm.shape[2] != C:
        raise ValueError(f"lm must have shape (B, S+1, C) with B={B}, C={C} from am {tuple(am.shape)}, got {tuple(lm.shape)}")
    if lm.shape[1] < 1:
        raise ValueError("lm must have at least one position (S+1 >= 1): position 0 is the start context")
    S = lm.shape[1] - 1
    check_symbols(symbols, B, S, C)
    check_termination_symbol(termination_symbol, C)
    return B, S, T, C


def _simple_terms(lm: Tensor, am: Tensor, symbols: Tensor, termination_symbol: int):
    """Shared pieces of the additive ("simple") joiner lattice.

    Returns (px_am (B,S,T), px_lm (B,S,1), py_am (B,1,T), py_lm (B,S+1,1), normalizers
    (B,S+1,T), am_max (B,T,1), lm_max (B,S+1,1), am_probs (B,T,C), lm_probs (B,S+1,C)).
    normalizers[b, s, t] = log sum_c exp(am[b, t, c] + lm[b, s, c]) is a batched matmul in
    probability space after max-subtraction, so the (B, T, S+1, C) sum is never formed.
    """
    B, T, C = am.shape
    S = lm.shape[1] - 1
    am_max = am.amax(dim=2, keepdim=True)  # (B, T, 1)
    lm_max = lm.amax(dim=2, keepdim=True)  # (B, S+1, 1)
    am_probs = (am - am_max).exp()  # (B, T, C)
    lm_probs = (lm - lm_max).exp()  # (B, S+1, C)
    # `tiny` keeps log() finite when every product underflows.
    normalizers = (torch.matmul(lm_probs, am_probs.transpose(1, 2)) + torch.finfo(am.dtype).tiny).log()
    normalizers = normalizers + lm_max + am_max.transpose(1, 2)  # (B, S+1, T)

    symbols = symbols.long()
    # Gather from am^T (B, C, T) along C: no (B, S, T, C) expansion, whose backward would be huge.
    px_am = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(-1).expand(B, S, T))  # (B, S, T)
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(-1))  # (B, S, 1)
    py_am = am[:, :, termination_symbol].unsqueeze(1)  # (B, 1, T)
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)  # (B, S+1, 1)
    return px_am, px_lm, py_am, py_lm, normalizers, am_max, lm_max, am_probs, lm_probs


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Lattice of the additive joiner log_softmax(am[b, t] + lm[b, s]).

    Args:
      lm: (B, S+1, C) decoder ("language model") logits; lm[b, s] has seen s symbols
        (position 0 is the start context).
      am: (B, T, C) encoder ("acoustic model") logits.
      symbols: (B, S) int64 label ids in [0, C), padded arbitrarily past each length.
      termination_symbol: the blank id.
      rnnt_type: "regular", "modified" or "constrained".
      boundary: optional (B, 4) [s_begin, t_begin, s_end, t_end]; only t_end is used here.
    Argument order as in k2 (rnnt_type before boundary, unlike the losses).
    Returns: (px, py), see the module docstring.
    """
    B, S, T, C = _check_lm_am(lm, am, symbols, termination_symbol, rnnt_type)
    boundary = check_boundary(boundary, B, S, T, rnnt_type)
    lm, am = _float(lm), _float(am)
    px_am, px_lm, py_am, py_lm, normalizers, *_ = _simple_terms(lm, am, symbols, termination_symbol)
    px = px_am + px_lm - normalizers[:, :S]  # (B, S, T)
    py = py_am + py_lm - normalizers  # (B, S+1, T)
    return _finish(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """Like :func:`get_rnnt_logprobs`, log-linearly interpolated with LM-only and AM-only lattices.

    log p = (1 - lm_only_scale - am_only_scale) * log p_joint + lm_only_scale * log p_lm
            + am_only_scale * log p_am,
    where p_lm = softmax(lm[b, s]) and p_am = softmax(am[b, t] + log u), u being the average of
    softmax(lm) over all batch entries and positions (padding included, as in k2): a unigram
    "LM" so that the AM-only distribution is a sensible prior-weighted one. Gradients flow
    through u. Args and returns as in :func:`get_rnnt_logprobs`.
    """
    B, S, T, C = _check_lm_am(lm, am, symbols, termination_symbol, rnnt_type)
    boundary = check_boundary(boundary, B, S, T, rnnt_type)
    lm, am = _float(lm), _float(am)
    px_am, px_lm, py_am, py_lm, normalizers, am_max, lm_max, am_probs, lm_probs = _simple_terms(
        lm, am, symbols, termination_symbol
    )
    tiny = torch.finfo(lm.dtype).tiny
    lm_sums = lm_probs.sum(dim=2, keepdim=True)  # (B, S+1, 1)
    unigram = (lm_probs / lm_sums).mean(dim=(0, 1)) + tiny  # (C,)
    # AM-only normaliser: log sum_c exp(am[b, t, c]) * u[c], as one matrix-vector product.
    am_only_norm = (torch.mv(am_probs.reshape(-1, C), unigram).reshape(B, T, 1).log() + am_max).transpose(1, 2)  # (B, 1, T)
    log_unigram = unigram.log()
    lm_only_norm = lm_sums.log() + lm_max  # (B, S+1, 1)

    px = px_am + px_lm - normalizers[:, :S]  # (B, S, T)
    px_am_only = px_am + log_unigram[symbols.long()].unsqueeze(-1) - am_only_norm  # (B, S, T)
    px_lm_only = px_lm - lm_only_norm[:, :S]  # (B, S, 1)
    py = py_am + py_lm - normalizers  # (B, S+1, T)
    py_am_only = py_am + log_unigram[termination_symbol] - am_only_norm  # (B, 1, T)
    py_lm_only = py_lm - lm_only_norm  # (B, S+1, 1)

    combined_scale = 1.0 - lm_only_scale - am_only_scale
    px = px * combined_scale + px_lm_only * lm_only_scale + px_am_only * am_only_scale
    py = py * combined_scale + py_lm_only * lm_only_scale + py_am_only * am_only_scale
    return _finish(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_joint(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Lattice of a full joiner: log_softmax over C of logits (B, T, S+1, C).

    Only the gathered true-label and blank entries and the (B, T, S+1) normalisers are formed;
    no (B, T, S+1, C) log-softmax copy is kept. Returns (px, py) as in the module docstring.
    Argument order as in k2 (rnnt_type, then boundary); fast_rnnt's version of this one
    function takes boundary first, so pass boundary by keyword to serve both.
    """
    check_rnnt_type(rnnt_type)
    check_ndim("logits", logits, 4, "(B, T, S+1, C)")
    B, T, S1, C = logits.shape
    S = S1 - 1
    check_symbols(symbols, B, S, C)
    check_termination_symbol(termination_symbol, C)
    boundary = check_boundary(boundary, B, S, T, rnnt_type)
    # The label arc leaving position s is symbols[s]; position S has none (a blank dummy, dropped).
    targets = torch.cat([symbols.long(), symbols.new_full((B, 1), termination_symbol).long()], dim=1)
    px, py = window_logprobs(logits, targets.unsqueeze(1).expand(B, T, S1), termination_symbol)  # (B, T, S+1)
    return _finish(px[:, :, :S].transpose(1, 2), py.transpose(1, 2), boundary, rnnt_type)


def add_delay_penalty(px: Tensor, boundary: Optional[Tensor], rnnt_type: str, delay_penalty: float) -> Tensor:
    """Adds delay_penalty * ((T_b - 1) / 2 - t) to every symbol arc on frame t (arXiv 2211.00490).

    Symbols emitted early are rewarded, late ones penalised; the mean over frames is ~0 so the
    loss scale hardly changes. T_b is t_end from boundary (or T).
    """
    if delay_penalty <= 0.0:
        return px
    B, S, T1 = px.shape
    T = T1 - 1 if rnnt_type == "regular" else T1
    if boundary is None:
        offset = px.new_full((B, 1, 1), (T - 1) / 2)
    else:
        offset = ((boundary[:, 3] - 1) / 2).reshape(B, 1, 1)
    frames = torch.arange(T1, device=px.device).reshape(1, 1, T1)
    return px + ((offset - frames) * delay_penalty).to(px.dtype)


def forbid_early_symbols(px: Tensor, symbol_start: Optional[Tensor], boundary: Optional[Tensor],
                         rnnt_type: str) -> Tensor:
    """px (B, S, T+1) regular / (B, S, T) otherwise, with every symbol arc on frames
    t < symbol_start[b] removed (-inf): those frames can only emit blank.

    A streaming model trained with dynamic chunks can learn to emit an utterance's first
    words on its first frames, seeing them through the look-ahead inside a long training
    chunk; decoded with shorter chunks it then guesses them (asr_recipes.training.onset
    says where speech starts). symbol_start is clamped so that every sequence keeps a path:
    at most T_b - 1 (regular: any number of symbols on one frame), at most T_b - U_b otherwise
    (one frame per symbol). None returns px unchanged.
    """
    if symbol_start is None:
        return px
    B, S, T1 = px.shape
    T = T1 - 1 if rnnt_type == "regular" else T1
    if boundary is None:
        t_end, s_end = px.new_full((B,), T, dtype=torch.long), px.new_full((B,), S, dtype=torch.long)
    else:
        s_end, t_end = boundary[:, 2], boundary[:, 3]
    latest = t_end - 1 if rnnt_type == "regular" else t_end - s_end
    start = torch.minimum(symbol_start.to(device=px.device, dtype=torch.long), latest.clamp(min=0))
    frames = torch.arange(T1, device=px.device).reshape(1, 1, T1)
    return px.masked_fill(frames < start.reshape(B, 1, 1), NEG_INF)

"""Argument validation for the public loss functions.

Every check raises ``ValueError`` naming the argument, what was expected and what
was received, so a wrong call fails at the API boundary instead of deep inside a
gather or the recursion. Checks that need tensor *values* (symbol ids, boundary
entries) cost one host/device synchronisation each on CUDA; they are grouped so
that each public call pays at most a couple.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

RNNT_TYPES = ("regular", "modified", "constrained")
REDUCTIONS = ("none", "mean", "sum")


def check_rnnt_type(rnnt_type: str) -> None:
    if not isinstance(rnnt_type, str):
        # Most likely a boundary tensor passed positionally in fast_rnnt's order for
        # get_rnnt_logprobs_joint (boundary, rnnt_type); k2's order is (rnnt_type, boundary).
        raise ValueError(
            f"rnnt_type must be one of {RNNT_TYPES}, got a {type(rnnt_type).__name__}: get_rnnt_logprobs and "
            "get_rnnt_logprobs_joint take (..., termination_symbol, rnnt_type, boundary) as in k2; "
            "pass boundary=... by keyword"
        )
    if rnnt_type not in RNNT_TYPES:
        raise ValueError(f"rnnt_type must be one of {RNNT_TYPES}, got {rnnt_type!r}")


def check_reduction(reduction: Optional[str]) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_ndim(name: str, x: Tensor, ndim: int, layout: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {layout}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim} dims), got {tuple(x.shape)}")


def check_lattice(px: Tensor, py: Tensor, names: Tuple[str, str] = ("px", "py")) -> Tuple[int, int, int, bool]:
    """px (B, S, T+1) regular or (B, S, T) modified/constrained, py (B, S+1, T), of one float
    dtype and device. Returns (B, S, T, regular)."""
    x_name, y_name = names
    check_ndim(x_name, px, 3, "(B, S, T+1) or (B, S, T)")
    check_ndim(y_name, py, 3, "(B, S+1, T)")
    B, S, T1 = px.shape
    T = py.shape[2]
    if tuple(py.shape) != (B, S + 1, T):
        raise ValueError(
            f"{y_name} must have shape (B, S+1, T) = ({B}, {S + 1}, T) given {x_name} {tuple(px.shape)}, "
            f"got {tuple(py.shape)}"
        )
    if T1 not in (T, T + 1):
        raise ValueError(
            f"{x_name}'s last dim must be T+1={T + 1} (regular) or T={T} (modified), "
            f"got {x_name} {tuple(px.shape)} with {y_name} {tuple(py.shape)}"
        )
    if px.dtype != py.dtype or not px.is_floating_point():
        raise ValueError(f"{x_name} and {y_name} must be floating point of the same dtype, got {px.dtype} and {py.dtype}")
    if px.device != py.device:
        raise ValueError(f"{x_name} and {y_name} must be on the same device, got {px.device} and {py.device}")
    return B, S, T, T1 == T + 1


def check_symbols(symbols: Tensor, B: int, S: int, C: int) -> None:
    """symbols: int tensor (B, S) with values in [0, C)."""
    check_ndim("symbols", symbols, 2, "(B, S)")
    if symbols.is_floating_point() or symbols.is_complex():
        raise ValueError(f"symbols must be an integer tensor, got dtype {symbols.dtype}")
    if tuple(symbols.shape) != (B, S):
        raise ValueError(
            f"symbols must have shape (B, S) = ({B}, {S}) to match the other inputs, "
            f"got {tuple(symbols.shape)}"
        )
    if symbols.numel() > 0:
        lo, hi = torch.stack(torch.aminmax(symbols)).tolist()  # one host sync for both
        if lo < 0 or hi >= C:
            raise ValueError(
                f"symbols must be token ids in [0, C) = [0, {C}), got values in [{lo}, {hi}] "
                "(is the vocabulary size of the model smaller than the tokenizer's?)"
            )


def check_termination_symbol(termination_symbol: int, C: int) -> None:
    if not 0 <= int(termination_symbol) < C:
        raise ValueError(f"termination_symbol must be in [0, C) = [0, {C}), got {termination_symbol}")


def check_boundary(boundary: Optional[Tensor], B: int, S: int, T: int, rnnt_type: str) -> Optional[Tensor]:
    """Validates boundary (B, 4) = [s_begin, t_begin, s_end, t_end] and returns it as int64.

    End values are one-past-the-last: 0 <= s_begin <= s_end <= S, 0 <= t_begin <= t_end <= T.
    For modified/constrained transducers every utterance needs at least as many frames as
    symbols (one symbol per frame at most), otherwise it has no alignment at all.
    """
    if boundary is None:
        if rnnt_type != "regular" and T < S:
            raise ValueError(
                f"rnnt_type={rnnt_type!r} emits at most one symbol per frame, so it needs "
                f"T >= S, got T={T} frames for S={S} symbols"
            )
        return None
    if not isinstance(boundary, Tensor) or tuple(boundary.shape) != (B, 4):
        shape = tuple(boundary.shape) if isinstance(boundary, Tensor) else type(boundary).__name__
        raise ValueError(f"boundary must be a (B, 4) = ({B}, 4) int tensor, got {shape}")
    if boundary.is_floating_point():
        raise ValueError(f"boundary must be an integer tensor, got dtype {boundary.dtype}")
    boundary = boundary.to(torch.int64)
    s_begin, t_begin, s_end, t_end = boundary.unbind(1)
    bad = (s_begin < 0) | (s_begin > s_end) | (s_end > S) | (t_begin < 0) | (t_begin > t_end) | (t_end > T)
    if rnnt_type != "regular":
        bad_len = (s_end - s_begin) > (t_end - t_begin)
    else:
        bad_len = torch.zeros_like(bad)
    flags = torch.stack([bad.any(), bad_len.any()]).tolist()  # one sync for both checks
    if flags[0]:
        b = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"boundary[{b}] = {boundary[b].tolist()} is outside the tensor: need "
            f"0 <= s_begin <= s_end <= S={S} and 0 <= t_begin <= t_end <= T={T} "
            "(boundary rows are [begin_symbol, begin_frame, end_symbol, end_frame], ends exclusive)"
        )
    if flags[1]:
        b = int(bad_len.nonzero()[0, 0])
        raise ValueError(
            f"utterance {b} has {int(s_end[b] - s_begin[b])} symbols but only "
            f"{int(t_end[b] - t_begin[b])} frames; rnnt_type={rnnt_type!r} emits at most one "
            "symbol per frame (filter such utterances or use rnnt_type='regular')"
        )
    return boundary

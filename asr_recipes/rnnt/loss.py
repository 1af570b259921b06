"""Transducer losses (negated log-likelihoods) with k2's names, argument order and defaults.

Every loss builds a lattice (px, py) with one of the functions in :mod:`.logprobs` /
:mod:`.pruning`, optionally adds a delay penalty, and runs the recursion. ``reduction``:
"none" -> (B,), "mean" -> average over the batch (no length normalisation), "sum".
With ``return_grad=True`` the result is ``(loss, (px_grad, py_grad))``: per-sequence arc
occupation probabilities of the lattice that was scored (after smoothing and delay penalty),
independent of the reduction - exactly what :func:`get_rnnt_prune_ranges` needs.

Beyond k2's API, every loss takes a keyword ``symbol_start`` (B,): the first frame on which
each sequence may emit a symbol (earlier frames are blank-only; see
:func:`.logprobs.forbid_early_symbols`). None (the default) leaves the lattice as k2's.
"""

from typing import Optional, Tuple, Union

from torch import Tensor

from .checks import check_reduction
from .logprobs import add_delay_penalty, forbid_early_symbols, get_rnnt_logprobs, get_rnnt_logprobs_joint, get_rnnt_logprobs_smoothed
from .mutual_information import score_checked_lattice
from .hat import get_hat_logprobs_pruned
from .pruning import get_rnnt_logprobs_pruned

LossResult = Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]


def _score_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad,
                   symbol_start=None) -> LossResult:
    px = add_delay_penalty(px, boundary, rnnt_type, delay_penalty)
    px = forbid_early_symbols(px, symbol_start, boundary, rnnt_type)
    result = score_checked_lattice(px, py, boundary, return_grad)
    scores, grads = result if return_grad else (result, None)
    if reduction == "none":
        loss = -scores
    elif reduction == "mean":
        loss = -scores.mean()
    else:
        loss = -scores.sum()
    return (loss, grads) if return_grad else loss


def rnnt_loss_simple(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
    *,
    symbol_start: Optional[Tensor] = None,
) -> LossResult:
    """Loss of the additive joiner log_softmax(am[b, t] + lm[b, s]); lm (B, S+1, C), am (B, T, C).

    See :func:`get_rnnt_logprobs` for the arguments.
    """
    check_reduction(reduction)
    px, py = get_rnnt_logprobs(lm, am, symbols, termination_symbol, rnnt_type, boundary)
    return _score_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad, symbol_start)


def rnnt_loss_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
    *,
    symbol_start: Optional[Tensor] = None,
) -> LossResult:
    """Simple loss on the LM-/AM-smoothed lattice of :func:`get_rnnt_logprobs_smoothed`.

    With both scales 0 it equals :func:`rnnt_loss_simple`. icefall uses lm_only_scale=0.25,
    am_only_scale=0.0 and takes the occupations (return_grad=True) for the pruning bounds.
    """
    check_reduction(reduction)
    px, py = get_rnnt_logprobs_smoothed(
        lm, am, symbols, termination_symbol, lm_only_scale, am_only_scale, boundary, rnnt_type
    )
    return _score_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad, symbol_start)


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
    *,
    symbol_start: Optional[Tensor] = None,
) -> LossResult:
    """Full (unpruned) transducer loss on joiner logits (B, T, S+1, C).

    For rnnt_type="regular" this equals ``torchaudio.functional.rnnt_loss`` with
    blank=termination_symbol and logit/target lengths taken from boundary[:, 3] / boundary[:, 2].
    """
    check_reduction(reduction)
    px, py = get_rnnt_logprobs_joint(logits, symbols, termination_symbol, rnnt_type, boundary)
    return _score_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad, symbol_start)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    use_hat_loss: bool = False,
    return_grad: bool = False,
    *,
    symbol_start: Optional[Tensor] = None,
) -> LossResult:
    """Transducer loss of the full joiner evaluated only in the windows given by ``ranges``.

    logits: (B, T, s_range, C) for the pairs (t, ranges[b, t, k]); ranges: (B, T, s_range) from
    :func:`get_rnnt_prune_ranges`. Equals :func:`rnnt_loss` when s_range >= S + 1; otherwise it
    is -log of the path mass inside the windows (paths leaving them are dead ends).
    use_hat_loss: read the logits as HAT (blank = sigmoid(logits[..., 0]), labels = a softmax
    over the rest; see :mod:`.hat`); needs termination_symbol == 0. The arguments up to
    use_hat_loss are k2's, in k2's order; return_grad (fast_rnnt's) comes last, so pass it by
    keyword (fast_rnnt has it where k2 has use_hat_loss).
    """
    check_reduction(reduction)
    lattice = get_hat_logprobs_pruned if use_hat_loss else get_rnnt_logprobs_pruned
    px, py = lattice(logits, symbols, ranges, termination_symbol, boundary, rnnt_type)
    return _score_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad, symbol_start)

"""HAT: the Hybrid Autoregressive Transducer factorisation of the joiner output (arXiv 2003.07705).

A softmax joiner gives blank and the labels one distribution. HAT splits it in two, so that the
label part can be read as an internal language model:

    P(blank | t, s)          = sigmoid(logits[0])
    P(label c | t, s), c > 0 = (1 - sigmoid(logits[0])) * softmax(logits[1:])[c - 1]

In log space, with b = logits[0]:  log P(blank) = logsigmoid(b),
log P(c) = logits[c] - logsumexp(logits[1:]) + logsigmoid(-b)   (logsigmoid(-b) = log(1 - sigmoid(b))).
The probabilities sum to 1 over C. Blank must be id 0 (the logit read by the sigmoid), as in k2.

:func:`get_hat_logprobs_pruned` is k2's function of that name: the pruned lattice of
:func:`~asr_recipes.rnnt.pruning.get_rnnt_logprobs_pruned` with these log-probs;
``rnnt_loss_pruned(..., use_hat_loss=True)`` scores it.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from .mutual_information import _compute_dtype
from .pruning import pruned_lattice


def hat_window_logprobs(logits: Tensor, targets: Tensor, blank: int) -> Tuple[Tensor, Tensor]:
    """HAT log-probs at ``targets`` and at blank (id 0).

    Args:
      logits: (B, T, R, C) joiner output, C >= 2. targets: (B, T, R) label ids in [0, C).
      blank: must be 0.
    Returns:
      (px_win, py_win), each (B, T, R), in float32 (float64 for float64 logits). A target equal
      to 0 (only the dummy past the transcript end, whose value is discarded) reads logits[0] in
      the label formula.
    """
    if blank != 0:
        raise ValueError(f"HAT needs termination_symbol == 0 (its blank is the sigmoid of logit 0), got {blank}")
    if logits.shape[-1] < 2:
        raise ValueError(f"HAT needs C >= 2 classes (blank plus at least one label), got logits {tuple(logits.shape)}")
    # Plain autograd ops: the backward materialises the (B, T, R, C) softmax of the labels,
    # as k2's does; HAT is an option, the default path keeps the fused window_logprobs.
    logits = logits.to(_compute_dtype(logits.dtype))
    blank_logit = logits[..., 0]  # (B, T, R)
    label_norm = torch.logsumexp(logits[..., 1:], dim=-1)  # (B, T, R)
    target_logit = torch.gather(logits, -1, targets.long().unsqueeze(-1)).squeeze(-1)  # (B, T, R)
    px_win = target_logit - label_norm + logsigmoid(-blank_logit)
    py_win = logsigmoid(blank_logit)
    return px_win, py_win


def get_hat_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor],
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """Pruned lattice (px, py) with HAT log-probs (module docstring); k2's signature.

    Args:
      logits: (B, T, s_range, C) joiner output for the pairs (t, ranges[b, t, k]).
      symbols: (B, S) label ids in [1, C). ranges: (B, T, s_range) from get_rnnt_prune_ranges.
      termination_symbol: must be 0.
      boundary: (B, 4) [s_begin, t_begin, s_end, t_end] or None for [0, 0, S, T].
      rnnt_type: "regular", "modified" or "constrained".
    Returns: px (B, S, T+1) / (B, S, T) and py (B, S+1, T), -inf outside the windows.
    """
    if termination_symbol != 0:
        raise ValueError(
            f"HAT needs termination_symbol == 0 (its blank is the sigmoid of logit 0), got {termination_symbol}; "
            "put blank at id 0 or use the softmax loss (use_hat_loss=False)"
        )
    return pruned_lattice(logits, symbols, ranges, termination_symbol, boundary, rnnt_type, hat_window_logprobs)

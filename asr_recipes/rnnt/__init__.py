"""Pruned RNN-T loss library with k2's API, in PyTorch (plus Triton kernels on CUDA).

Drop-in for the k2 functions used by icefall's pruned transducers::

    import asr_recipes.rnnt as k2

Functions mirror k2's names, argument order, defaults, shapes and return conventions. See
``shared/docs/pruned_rnnt.md`` and the README for the maths and a usage example.
"""

from .logprobs import (
    fix_for_boundary,
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_smoothed,
)
from .loss import rnnt_loss, rnnt_loss_pruned, rnnt_loss_simple, rnnt_loss_smoothed
from .mutual_information import joint_mutual_information_recursion, mutual_information_recursion
from .pruning import do_rnnt_pruning, get_rnnt_logprobs_pruned, get_rnnt_prune_ranges

__all__ = [
    "mutual_information_recursion",
    "joint_mutual_information_recursion",
    "get_rnnt_logprobs",
    "rnnt_loss_simple",
    "get_rnnt_logprobs_smoothed",
    "rnnt_loss_smoothed",
    "get_rnnt_logprobs_joint",
    "rnnt_loss",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
    "get_rnnt_logprobs_pruned",
    "rnnt_loss_pruned",
    "fix_for_boundary",
]

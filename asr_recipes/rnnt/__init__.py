"""Pruned RNN-T loss library with k2's API, in PyTorch (plus Triton kernels on CUDA).

Drop-in for k2's transducer-loss functions (those icefall's pruned transducers use, plus HAT
and the deprecated prune ranges) and for fast_rnnt, k2's stand-alone copy of them::

    import asr_recipes.rnnt as k2
    import asr_recipes.rnnt as fast_rnnt

Functions mirror k2's names, argument order, defaults, shapes and return conventions; where
fast_rnnt's defaults differ they are supersets (get_rnnt_logprobs_pruned's boundary=None,
return_grad on every loss). The few remaining differences are listed in the README and
checked in tests/rnnt/test_api.py. See ``shared/docs/pruned_rnnt.md`` and the README for the
maths and a usage example.
"""

from .logprobs import (
    fix_for_boundary,
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_smoothed,
)
from .hat import get_hat_logprobs_pruned
from .loss import rnnt_loss, rnnt_loss_pruned, rnnt_loss_simple, rnnt_loss_smoothed
from .mutual_information import joint_mutual_information_recursion, mutual_information_recursion
from .pruning import (
    do_rnnt_pruning,
    get_rnnt_logprobs_pruned,
    get_rnnt_prune_ranges,
    get_rnnt_prune_ranges_deprecated,
)

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
    "get_rnnt_prune_ranges_deprecated",
    "do_rnnt_pruning",
    "get_rnnt_logprobs_pruned",
    "rnnt_loss_pruned",
    "get_hat_logprobs_pruned",
    "fix_for_boundary",
]

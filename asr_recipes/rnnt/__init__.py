"""Pruned RNN-T loss library with k2's API, in PyTorch (plus Triton kernels on CUDA).

Drop-in for k2's transducer-loss functions (those icefall's pruned transducers use, plus HAT
and the deprecated prune ranges) and for fast_rnnt, k2's stand-alone copy of them::

    import asr_recipes.rnnt as k2
    import asr_recipes.rnnt as fast_rnnt

Functions mirror k2's names, argument order, defaults, shapes and return conventions; where
fast_rnnt's defaults differ they are supersets (get_rnnt_logprobs_pruned's boundary=None,
return_grad on every loss). The few remaining differences are listed in the README and
checked in tests/rnnt/test_api.py; the README also shows one training step.

How pruned RNN-T works (Kuang et al., arXiv 2206.13236), in the order a training step runs it:

1. The lattice. Node (s, t) means s labels emitted and t encoder frames consumed; px[b, s, t]
   is the log-probability of emitting label s+1 there, py[b, s, t] that of blank (moving to
   the next frame). The loss is minus the log of the summed probability of all paths from
   (0, 0) to (S_b, T_b): mutual_information.py computes it wavefront by wavefront, and with
   ``return_grad`` also the arc occupations (the posterior probability that the alignment
   takes each arc).
2. The simple loss. An additive joiner, logits = am[t] + lm[s], gives px/py without forming
   the (B, T, S+1, C) tensor (its normaliser is a log-space matrix product); smoothing mixes in
   LM-only and AM-only lattices (lm_only_scale, am_only_scale). logprobs.py.
3. The bounds. From the simple lattice's occupations, each frame keeps a window of s_range
   label positions, the start maximising the blank mass leaving the frame inside the window
   minus the mass entering it from below; windows are then made monotone and reachable.
   pruning.get_rnnt_prune_ranges.
4. The pruned loss. The full (non-linear) joiner runs only on the kept (t, s) pairs,
   (B, T, s_range, C); arcs outside the windows get -inf, so the pruned loss is minus the log
   of the path mass that stays inside the band. pruning.py, loss.py.
5. Training minimises a warm-up-weighted sum of the simple and pruned losses
   (asr_recipes.training.objective); both run in float32.

rnnt_type "regular" lets a frame emit any number of labels; "modified" at most one (symbol arcs
also advance a frame); "constrained" is modified with a symbol arc also paying the next
context's blank. delay_penalty adds delay_penalty * ((T_b - 1) / 2 - t) to symbol arcs.
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

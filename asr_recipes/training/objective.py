"""The training objective as a module, so DistributedDataParallel can wrap one forward().

``TransducerObjective(model, cfg)`` returns per-utterance losses for the configured loss type:

* ``pruned``: simple (smoothed) + pruned RNN-T losses, weighted by the warm-up schedule
  (:class:`~asr_recipes.training.schedules.LossScales`);
* ``full``:   the full joiner with torchaudio's rnnt_loss (for side-by-side comparisons).
"""

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from asr_recipes.constants import frames_after_subsampling
from asr_recipes.training.schedules import LossScales


@dataclass(frozen=True)
class LossConfig:
    type: str = "pruned"  # pruned | full
    prune_range: int = 5
    lm_scale: float = 0.25
    am_scale: float = 0.0
    simple_loss_scale: float = 0.5
    warm_step: int = 2000
    delay_penalty: float = 0.0
    rnnt_type: str = "regular"  # pruned only: regular | modified (<= 1 symbol per frame) | constrained

    def __post_init__(self):
        if self.type not in ("pruned", "full"):
            raise ValueError(f"loss.type must be 'pruned' or 'full', got {self.type!r}")
        if self.rnnt_type not in ("regular", "modified", "constrained"):
            raise ValueError(f"loss.rnnt_type must be 'regular', 'modified' or 'constrained', got {self.rnnt_type!r}")

    @property
    def scales(self) -> LossScales:
        return LossScales(self.simple_loss_scale, self.warm_step)


class TransducerObjective(nn.Module):
    def __init__(self, model: nn.Module, cfg: LossConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor,
                step: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-utterance weighted losses.

        Args: a batch as produced by the data pipeline (features (N, T, 80), feature_lens (N,),
          tokens (N, U_max) padded, token_lens (N,)) and the training step (for the warm-up).
        Returns: total (N,) nats per utterance (may hold inf/nan for bad utterances: the caller
          drops them), and the unweighted parts {"simple": (N,), "pruned": (N,)} or {"full": (N,)}.
        """
        if self.cfg.type == "full":
            full = self.model.full_loss(features, feature_lens, tokens, token_lens, reduction="none")
            return full, {"full": full}
        simple, pruned = self.model(
            features, feature_lens, tokens, token_lens,
            prune_range=self.cfg.prune_range, am_scale=self.cfg.am_scale, lm_scale=self.cfg.lm_scale,
            reduction="none", delay_penalty=self.cfg.delay_penalty, rnnt_type=self.cfg.rnnt_type,
        )
        simple_scale, pruned_scale = self.cfg.scales.at(step)
        return simple_scale * simple + pruned_scale * pruned, {"simple": simple, "pruned": pruned}


def encoder_frames(feature_lens: Tensor) -> Tensor:
    """Encoder frames per utterance (N,), for per-frame loss normalisation and logging."""
    return frames_after_subsampling(feature_lens)


def finite_mask(total: Tensor) -> Tensor:
    """Utterances whose loss can be trained on (finite); the others are dropped and counted."""
    return torch.isfinite(total.detach())


def masked_sum(values: Tensor, keep: Tensor) -> Tensor:
    """Sum of values (N,) over the kept utterances; dropped ones add an exact 0
    (where(), not multiplication: nan * 0 = nan)."""
    return torch.where(keep, values, torch.zeros_like(values)).sum()

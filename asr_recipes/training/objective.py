"""The training objective as a module, so DistributedDataParallel can wrap one forward().

``TransducerObjective(model, cfg)`` returns per-utterance losses for the configured loss type:

* ``pruned``: simple (smoothed) + pruned RNN-T losses, weighted by the warm-up schedule
  (:class:`~asr_recipes.training.schedules.LossScales`);
* ``full``:   the full joiner with torchaudio's rnnt_loss (for side-by-side comparisons).

Streaming (causal) models train with dynamic chunks (WeNet's U2, icefall's
``--dynamic-chunk-training``): each training batch draws an attention chunk size
(:class:`ChunkTrainingConfig`), so one model decodes with any chunk size; validation uses
full context. Offline models never draw, so their training is unchanged.
"""

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.training.schedules import LossScales


@dataclass(frozen=True)
class LossConfig:
    """conf/loss/*.yaml: the loss type and its warm-up weighting, and flat the lattice's keys
    (prune_range, lm_scale, am_scale, delay_penalty, rnnt_type), of which ``lattice`` is
    the models' typed view."""

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
        _ = self.lattice  # building it validates the lattice keys

    @property
    def lattice(self) -> LatticeConfig:
        return LatticeConfig(self.prune_range, self.lm_scale, self.am_scale, self.delay_penalty, self.rnnt_type)

    @property
    def scales(self) -> LossScales:
        return LossScales(self.simple_loss_scale, self.warm_step)


@dataclass(frozen=True)
class ChunkTrainingConfig:
    """Attention chunks drawn per training batch for causal (streaming) models.

    With probability ``full_context_prob`` a batch trains with full context; otherwise
    with a chunk size drawn uniformly from 1 .. ``max_chunk`` encoder frames (40 ms each)
    and ``num_left_chunks`` chunks of left context (-1: all).
    """

    full_context_prob: float = 0.25
    max_chunk: int = 16
    num_left_chunks: int = -1

    def __post_init__(self):
        if not 0.0 <= self.full_context_prob <= 1.0:
            raise ValueError(f"chunk_training.full_context_prob must be in [0, 1], got {self.full_context_prob}")
        if self.max_chunk < 1:
            raise ValueError(f"chunk_training.max_chunk must be >= 1 encoder frames, got {self.max_chunk}")

    def draw(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """(chunk_size, left_context) in encoder frames for one batch; (0, -1) = full context.
        Draws from torch's RNG, which checkpoints save, so a resumed run draws the same."""
        if float(torch.rand((), generator=generator)) < self.full_context_prob:
            return 0, -1
        chunk = int(torch.randint(1, self.max_chunk + 1, (), generator=generator))
        return chunk, -1 if self.num_left_chunks < 0 else chunk * self.num_left_chunks


class TransducerObjective(nn.Module):
    def __init__(self, model: nn.Module, cfg: LossConfig, chunks: ChunkTrainingConfig | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        # dynamic chunks only for streaming models (an offline encoder cannot mask chunks)
        self.chunks = chunks if getattr(model.encoder, "causal", False) else None

    def forward(self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor,
                step: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-utterance weighted losses.

        Args: a batch as produced by the data pipeline (features (N, T, 80), feature_lens (N,),
          tokens (N, U_max) padded, token_lens (N,)) and the training step (for the warm-up).
        Returns: total (N,) nats per utterance (may hold inf/nan for bad utterances: the caller
          drops them), and the unweighted parts {"simple": (N,), "pruned": (N,)} or {"full": (N,)}.
        """
        chunk_size, left_context = self.chunks.draw() if self.chunks is not None and self.training else (0, -1)
        if self.cfg.type == "full":
            full = self.model.full_loss(features, feature_lens, tokens, token_lens, reduction="none",
                                        chunk_size=chunk_size, left_context=left_context)
            return full, {"full": full}
        simple, pruned = self.model(features, feature_lens, tokens, token_lens, self.cfg.lattice, reduction="none",
                                    chunk_size=chunk_size, left_context=left_context)
        simple_scale, pruned_scale = self.cfg.scales.at(step)
        return simple_scale * simple + pruned_scale * pruned, {"simple": simple, "pruned": pruned}


def finite_mask(total: Tensor) -> Tensor:
    """Utterances whose loss can be trained on (finite); the others are dropped and counted."""
    return torch.isfinite(total.detach())


def masked_sum(values: Tensor, keep: Tensor) -> Tensor:
    """Sum of values (N,) over the kept utterances; dropped ones add an exact 0
    (where(), not multiplication: nan * 0 = nan)."""
    return torch.where(keep, values, torch.zeros_like(values)).sum()

"""The transducer lattice's settings: one frozen value that the losses, the prune diagnostics
and training's loss config all speak.

    lattice = LatticeConfig(prune_range=5, lm_scale=0.25)
    simple, pruned = model(features, feature_lens, tokens, token_lens, lattice)

The simple (smoothed) loss's lattice decides where to prune, so everything that shapes it
(lm_scale, am_scale, delay_penalty, rnnt_type) shapes the band too; prune_range is the band's
width. Training's LossConfig holds the same keys flat (conf/loss/*.yaml) and derives this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RNNT_TYPES = ("regular", "modified", "constrained")


@dataclass(frozen=True)
class LatticeConfig:
    """Attributes:
        prune_range: S, label positions kept per encoder frame in the pruned loss (>= 2 for a
            regular lattice; get_rnnt_prune_ranges widens it when a transcript needs more).
        lm_scale, am_scale: lm_only_scale / am_only_scale of rnnt_loss_smoothed (the simple
            loss interpolated with LM-only and AM-only lattices).
        delay_penalty: k2's delay penalty (0 = off), applied to both losses.
        rnnt_type: lattice topology of both losses: "regular" (any number of symbols per
            frame), "modified" (at most one per frame, as sherpa-onnx decodes) or "constrained".
    """

    prune_range: int = 5
    lm_scale: float = 0.25
    am_scale: float = 0.0
    delay_penalty: float = 0.0
    rnnt_type: str = "regular"

    def __post_init__(self):
        for name in ("lm_scale", "am_scale", "delay_penalty"):  # YAML may give 0 for 0.0
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"loss.{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.rnnt_type not in RNNT_TYPES:
            raise ValueError(f"loss.rnnt_type must be 'regular', 'modified' or 'constrained', got {self.rnnt_type!r}")
        if isinstance(self.prune_range, bool) or not isinstance(self.prune_range, int) or self.prune_range < 1:
            raise ValueError(f"loss.prune_range must be an integer >= 1 label positions, got {self.prune_range!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "LatticeConfig":
        """The lattice keys of a mapping that may hold others (a loss config section); the
        missing ones keep their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

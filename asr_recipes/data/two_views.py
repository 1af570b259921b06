"""Two SpecAugment views of one batch, for consistency-regularised CTC (CR-CTC).

CR-CTC (asr_recipes.models.ctc.consistency_loss) sees every utterance twice under
independently drawn masks and pulls each view's CTC posteriors towards the other's. As in
icefall (``zipformer/model.py``, ``--time-mask-ratio``):

    features (N, T, F) --time warp, once--> warped (both views share the warp)
    warped --frequency + time masks--> view 1     } masks drawn independently per view,
    warped --frequency + time masks--> view 2     } time masking time_mask_ratio x stronger

"Stronger" scales the time masks of the single-view settings (data.specaug): their number
(num_frame_masks x ratio, rounded down) and the most of an utterance they may cover
(max_frames_mask_fraction x ratio); icefall's defaults 10 / 0.15 become 25 / 0.375 at its
ratio 2.5. Each view is masked with probability p (lhotse's SpecAugment, 0.9), as is the
warp. The two views thus differ only inside masks: where neither view is masked they are
equal.

Runs in the dataset (asr_recipes.data.dataset.AsrDataset), like the single-view SpecAugment,
so the draws come from the per-batch seed (asr_recipes.data.augment): a resumed run and a
DataLoader worker augment batch k exactly as the uninterrupted run did.
"""

from __future__ import annotations

import random

import torch
from lhotse.dataset import SpecAugment
from lhotse.dataset.signal_transforms import time_warp
from torch import Tensor

#: probability that a sequence is warped, and (separately) that a view is masked: lhotse's default
APPLY_PROB = 0.9


class TwoViewSpecAugment:
    """Callable: (features (N, T, F), supervision_segments int (S, 3) rows (sequence index,
    start frame, frames)) -> (view 1, view 2), each (N, T, F), both new tensors.

    Args (the single-view lhotse SpecAugment settings, conf data.specaug, plus the ratio):
        time_warp_factor: time warping applied once, to each segment (< 1: none).
        num_feature_masks, features_mask_size: frequency masks per view.
        num_frame_masks, frames_mask_size, max_frames_mask_fraction: one view's time masks
            before scaling by ``time_mask_ratio``.
        time_mask_ratio: > 0; icefall's CR-CTC uses 2.5.
    """

    def __init__(self, time_warp_factor: int = 80, num_feature_masks: int = 2, features_mask_size: int = 27,
                 num_frame_masks: int = 10, frames_mask_size: int = 100, max_frames_mask_fraction: float = 0.15,
                 time_mask_ratio: float = 2.5):
        if time_mask_ratio <= 0:
            raise ValueError(f"time_mask_ratio must be > 0, got {time_mask_ratio}")
        scaled_masks = int(num_frame_masks * time_mask_ratio)
        if scaled_masks < 1:
            raise ValueError(f"num_frame_masks x time_mask_ratio = {num_frame_masks} x {time_mask_ratio} leaves no "
                             "time mask; raise either")
        self.time_warp_factor = time_warp_factor
        # masks only: the warp is applied before the batch is doubled
        self.masks = SpecAugment(time_warp_factor=0, num_feature_masks=num_feature_masks,
                                 features_mask_size=features_mask_size, num_frame_masks=scaled_masks,
                                 frames_mask_size=frames_mask_size,
                                 max_frames_mask_fraction=max_frames_mask_fraction * time_mask_ratio, p=APPLY_PROB)

    def warp(self, features: Tensor, supervision_segments: Tensor) -> Tensor:
        """Time warp of each supervised segment with probability APPLY_PROB (lhotse's
        SpecAugment warps the same way); (N, T, F) -> a new (N, T, F)."""
        features = features.clone()
        if self.time_warp_factor is None or self.time_warp_factor < 1:
            return features
        for n, start, frames in supervision_segments.tolist():
            if random.random() > APPLY_PROB:
                continue
            end = start + frames
            features[n, start:end] = time_warp(features[n, start:end], factor=self.time_warp_factor)
        return features

    def __call__(self, features: Tensor, supervision_segments: Tensor) -> tuple[Tensor, Tensor]:
        N = features.size(0)
        warped = self.warp(features, supervision_segments)  # (N, T, F)
        both = self.masks(torch.cat([warped, warped]))  # (2N, T, F): every row masked on its own
        return both[:N], both[N:]

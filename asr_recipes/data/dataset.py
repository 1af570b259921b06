"""Map-style dataset: a sampled CutSet -> one padded transducer batch.

Used with ``DataLoader(dataset, sampler=<lhotse CutSampler>, batch_size=None)``: the
sampler yields a ``CutSet`` per batch and :meth:`AsrDataset.__getitem__` loads its
features (on the fly, from the lilcom storage written by the fbank stage).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from lhotse import CutSet
from lhotse.dataset.collation import collate_features

from asr_recipes.data.augment import batch_seed, seeded
from asr_recipes.data.filters import cut_text


class AsrDataset(torch.utils.data.Dataset):
    """Batches for transducer training and decoding.

    ``dataset[cuts]`` returns, with N cuts sorted by decreasing duration::

        {
          "features":     float32 (N, T, F)  log-mel fbank, F = NUM_MEL_BINS; frames past
                                             feature_lens[n] are padding (lhotse's low
                                             log-energy value), T = max(feature_lens)
          "feature_lens": int64 (N,)         feature frames per cut, BEFORE subsampling
          "tokens":       int64 (N, U_max)   token ids, right-padded with 0 (= BLANK_ID;
                                             padding is never a label, use token_lens)
          "token_lens":   int64 (N,)         tokens per cut, U
          "cut_ids":      list[str] (N)
          "texts":        list[str] (N)      reference transcripts
          "second_view":  float32 (N, T, F)  only with ``two_views``: the same cuts under
                                             other masks ("features" is the first view)
        }

    Args:
        tokenizer: ``encode(list[str]) -> list[list[int]]``.
        cut_transforms: CutSet -> CutSet before loading (e.g. lhotse ``CutMix``); they
            must keep cut durations and ids (``CutMix(pad_to_longest=False,
            preserve_id=True)``).
        input_transforms: called as ``t(features, supervision_segments=segments)`` with
            segments int32 (N, 3) = (cut index, start frame 0, feature_lens[n]) after
            collation (e.g. lhotse ``SpecAugment``).
        two_views: e.g. :class:`~asr_recipes.data.two_views.TwoViewSpecAugment`, called as
            ``two_views(features, segments) -> (view 1, view 2)`` after the input transforms
            (CR-CTC's two masked views; None: one view).
        seed: (seed, epoch). When given, all these transforms run under
            :func:`~asr_recipes.data.augment.seeded` with a seed computed from (seed, epoch,
            the batch's cut ids), so a batch is augmented the same in any process, after
            any resume; None leaves the process's random streams as they are.
    """

    def __init__(
        self,
        tokenizer,
        cut_transforms: Sequence[Callable[[CutSet], CutSet]] = (),
        input_transforms: Sequence[Callable[..., torch.Tensor]] = (),
        seed: tuple[int, int] | None = None,
        two_views: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.cut_transforms = list(cut_transforms)
        self.input_transforms = list(input_transforms)
        self.seed = seed
        self.two_views = two_views

    def __getitem__(self, cuts: CutSet) -> dict:
        cuts = cuts.sort_by_duration(ascending=False)
        if self.seed is not None and (self.cut_transforms or self.input_transforms or self.two_views is not None):
            with seeded(batch_seed(*self.seed, (c.id for c in cuts))):
                return self._batch(cuts)
        return self._batch(cuts)

    def _batch(self, cuts: CutSet) -> dict:
        for transform in self.cut_transforms:
            cuts = transform(cuts)
        features, feature_lens = collate_features(cuts)  # (N, T, F), (N,)
        feature_lens = feature_lens.to(torch.int64)
        n = len(feature_lens)
        segments = torch.stack(
            [torch.arange(n), torch.zeros(n, dtype=torch.int64), feature_lens], dim=1
        ).to(torch.int32)  # (N, 3): whole cut = one supervision segment
        for transform in self.input_transforms:
            features = transform(features, supervision_segments=segments)
        views = {}
        if self.two_views is not None:
            features, views["second_view"] = self.two_views(features, segments)  # (N, T, F) each
        texts = [cut_text(c) for c in cuts]
        token_lists = self.tokenizer.encode(texts)
        token_lens = torch.tensor([len(t) for t in token_lists], dtype=torch.int64)  # (N,)
        u_max = max((len(t) for t in token_lists), default=0)
        tokens = torch.zeros(len(token_lists), u_max, dtype=torch.int64)
        for i, ids in enumerate(token_lists):
            tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return {
            "features": features,
            "feature_lens": feature_lens,
            "tokens": tokens,  # (N, U_max)
            "token_lens": token_lens,
            "cut_ids": [c.id for c in cuts],
            "texts": texts,
            **views,
        }

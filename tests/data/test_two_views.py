"""Two SpecAugment views for CR-CTC: they differ only inside masks, masks are drawn
independently per view, time masking scales with time_mask_ratio, and the training loader
delivers both views reproducibly."""

import pytest
import torch

from asr_recipes.data.augment import seeded
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.two_views import TwoViewSpecAugment
from tests.data.test_datamodule import config, data, manifest  # noqa: F401  (module fixture)


def batch(lens, F=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lens), max(lens), F, generator=g)  # distinct values: only masks repeat a value
    segments = torch.tensor([[n, 0, T] for n, T in enumerate(lens)], dtype=torch.int32)
    return x, segments


def masked_frames_and_bins(view, value):
    """Time frames and frequency bins wholly set to ``value`` in a (T, F) view."""
    at = view == value
    return at.all(dim=1), at.all(dim=0)


def test_without_warping_each_view_is_the_input_except_whole_masked_frames_and_bins():
    x, segments = batch([300, 260, 120])
    augment = TwoViewSpecAugment(time_warp_factor=0, time_mask_ratio=2.5)
    with seeded(1):
        v1, v2 = augment(x, segments)
    assert v1.shape == v2.shape == x.shape
    masks = []
    for n in range(x.size(0)):
        value = x[n].mean()  # lhotse masks with the mean of the (unmasked) matrix
        for view in (v1[n], v2[n]):
            frames, bins = masked_frames_and_bins(view, value)
            inside = frames[:, None] | bins[None, :]  # (T, F)
            assert torch.equal(view[~inside], x[n][~inside])  # outside the masks: the input itself
            masks.append((frames, bins))
    assert any(f.any() for f, _ in masks)
    # drawn independently: the two views of an utterance have different masks
    assert all(not (torch.equal(f1, f2) and torch.equal(b1, b2))
               for (f1, b1), (f2, b2) in zip(masks[0::2], masks[1::2]) if f1.any() or f2.any())


def test_with_warping_the_views_share_the_warp_and_differ_only_inside_masks():
    x, segments = batch([400, 350, 300, 200], seed=2)
    augment = TwoViewSpecAugment(time_warp_factor=80, time_mask_ratio=2.5)
    with seeded(3):
        v1, v2 = augment(x, segments)
    differ = 0
    for n in range(x.size(0)):
        # the mask value is the mean of the warped matrix, the same for both views: the one
        # value that repeats (a masked frame repeats it 80 times, random inputs never repeat)
        values, counts = torch.unique(torch.cat([v1[n], v2[n]]), return_counts=True)
        value = values[counts.argmax()]
        explained = (v1[n] == v2[n]) | (v1[n] == value) | (v2[n] == value)
        assert explained.all()
        differ += int((v1[n] != v2[n]).sum())
    assert differ > 0
    assert not torch.equal(v1, x)  # warped and/or masked


def masked_share(ratio, draws=30, T=1000):
    x, segments = batch([T], seed=4)
    augment = TwoViewSpecAugment(time_warp_factor=0, num_feature_masks=0, time_mask_ratio=ratio)
    shares = []
    for seed in range(draws):
        with seeded(seed):
            for view in augment(x, segments):
                shares.append(float(masked_frames_and_bins(view[0], x[0].mean())[0].float().mean()))
    return torch.tensor(shares)


def test_time_masking_is_time_mask_ratio_times_stronger():
    """lhotse's masks for T=1000, frames_mask_size 100: 2 masks of < 75 frames at ratio 1
    (max 15%), 4 of < 93 at ratio 2.5 (max 37.5%): 2.3x the masked share here (masks overlap)."""
    single, double = masked_share(1.0), masked_share(2.5)
    assert single.max() <= 0.15 and double.max() <= 0.375
    assert 1.8 < float(double.mean() / single.mean()) < 3.2, (float(single.mean()), float(double.mean()))


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="time_mask_ratio"):
        TwoViewSpecAugment(time_mask_ratio=0)
    with pytest.raises(ValueError, match="no time mask"):
        TwoViewSpecAugment(num_frame_masks=1, time_mask_ratio=0.5)


def test_training_loader_gives_two_views_reproducibly(data):  # noqa: F811
    root, tok = data
    cfg = config(root, specaug={"enabled": True})
    clean = {c.id: torch.from_numpy(c.load_features()) for c in manifest(root, "train").values()}

    def batches():
        return [(b["cut_ids"], b["features"], b["second_view"])
                for b in DataModule(cfg, tok).train_dataloader(epoch=0, time_mask_ratio=2.5)]

    first, again = batches(), batches()
    differ = augmented = 0
    for (ids, v1, v2), (ids2, w1, w2) in zip(first, again):
        assert ids == ids2 and torch.equal(v1, w1) and torch.equal(v2, w2)  # seeded per batch
        assert v1.shape == v2.shape
        differ += sum(not torch.equal(v1[i], v2[i]) for i in range(len(ids)))
        augmented += sum(not torch.equal(v[i, : len(clean[c])], clean[c]) for v in (v1, v2)
                         for i, c in enumerate(ids))
    assert differ >= 10 and augmented >= 20  # 21 cuts, p = 0.9 per view
    # a single view stays the default, and CR-CTC needs SpecAugment on
    assert "second_view" not in next(iter(DataModule(cfg, tok).train_dataloader(epoch=0)))
    with pytest.raises(ValueError, match="data.specaug"):
        DataModule(config(root), tok).train_dataloader(epoch=0, time_mask_ratio=2.5)

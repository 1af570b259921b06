"""Conformer encoder: shapes, length convention, and that padding never leaks."""

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS, frames_after_subsampling
from asr_recipes.models.conformer import Conformer, ConvolutionModule, MaskedBatchNorm1d, make_pad_mask


def small_conformer(conv_norm="batch", dropout=0.0):
    torch.manual_seed(0)
    return Conformer(
        feature_dim=NUM_MEL_BINS, d_model=16, num_heads=2, ff_dim=32, num_layers=2,
        kernel_size=5, dropout=dropout, subsampling_channels=4, conv_norm=conv_norm,
    )


def padded_batch(lens, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lens), T, NUM_MEL_BINS, generator=g)
    return x, torch.tensor(lens)


def with_garbage_padding(x, lens, seed=2):
    g = torch.Generator().manual_seed(seed)
    y = x.clone()
    for n, L in enumerate(lens.tolist()):
        y[n, L:] = 100 * torch.randn(x.size(1) - L, x.size(2), generator=g)
    return y


def test_shapes_and_lengths():
    enc = small_conformer()
    x, lens = padded_batch([97, 60, 7], T=97)
    out, out_lens = enc(x, lens)
    assert out.shape == (3, frames_after_subsampling(97), 16)
    assert out_lens.tolist() == [frames_after_subsampling(L) for L in (97, 60, 7)]
    assert out_lens.dtype == torch.int64


@pytest.mark.parametrize("conv_norm", ["batch", "layer"])
@pytest.mark.parametrize("training", [False, True])
def test_padding_content_does_not_change_valid_outputs(conv_norm, training):
    enc = small_conformer(conv_norm)
    enc.train(training)  # training: masked batch-norm statistics (dropout is 0 here)
    x, lens = padded_batch([120, 83, 41], T=120)
    out, out_lens = enc(x, lens)
    out2, _ = enc(with_garbage_padding(x, lens), lens)
    for n, L in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out[n, :L], out2[n, :L], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conv_norm,training", [("batch", False), ("layer", False), ("layer", True)])
def test_utterance_alone_equals_utterance_in_padded_batch(conv_norm, training):
    # batch norm in training mode mixes utterances by design, hence not ("batch", True)
    enc = small_conformer(conv_norm).train(training)
    x, lens = padded_batch([120, 83, 41], T=120)
    out, out_lens = enc(x, lens)
    for n, L in enumerate(lens.tolist()):
        alone, alone_lens = enc(x[n : n + 1, :L], lens[n : n + 1])
        assert alone_lens.item() == out_lens[n].item() == alone.size(1)
        torch.testing.assert_close(out[n, : out_lens[n]], alone[0], atol=1e-5, rtol=1e-5)


def test_extra_padding_does_not_change_training_mode_batch_norm():
    enc = small_conformer("batch").train()
    x, lens = padded_batch([120, 83, 41], T=120)
    longer = torch.cat([x, 100 * torch.randn(3, 60, NUM_MEL_BINS)], dim=1)  # 60 more padded frames
    out, out_lens = enc(x, lens)
    out_longer, _ = enc(longer, lens)
    for n, L in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out[n, :L], out_longer[n, :L], atol=1e-5, rtol=1e-5)


def test_masked_batch_norm_uses_valid_frames_only():
    torch.manual_seed(0)
    bn = MaskedBatchNorm1d(3, momentum=0.5)
    x = torch.randn(2, 3, 6)
    lens = torch.tensor([6, 2])
    x[1, :, 2:] = 1e4  # padding that would dominate unmasked statistics
    out = bn(x, make_pad_mask(lens, 6))
    valid = torch.cat([x[0], x[1, :, :2]], dim=1)  # (C, 8) valid frames
    mean, var = valid.mean(1), valid.var(1, unbiased=False)
    expected = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + bn.eps)
    torch.testing.assert_close(out[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :, :2], expected[1, :, :2], atol=1e-5, rtol=1e-5)
    assert torch.all(out[1, :, 2:] == 0)
    # running statistics move halfway (momentum 0.5) towards the valid-frame statistics
    torch.testing.assert_close(bn.running_mean, 0.5 * mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(bn.running_var, 0.5 + 0.5 * valid.var(1, unbiased=True), atol=1e-5, rtol=1e-5)


def test_gradients_do_not_reach_padded_input_frames():
    enc = small_conformer()
    x, lens = padded_batch([64, 40], T=64)
    x.requires_grad_(True)
    out, out_lens = enc(x, lens)
    (out * ~make_pad_mask(out_lens, out.size(1))[..., None]).sum().backward()
    assert torch.all(x.grad[1, 40:] == 0)
    assert x.grad[1, :40].abs().sum() > 0


def test_errors_name_the_problem():
    enc = small_conformer()
    x, _ = padded_batch([30, 6], T=30)
    with pytest.raises(ValueError, match="utterance 1 of the batch has 6 feature frames"):
        enc(x, torch.tensor([30, 6]))
    with pytest.raises(ValueError, match="feature_dim=80"):
        enc(torch.randn(2, 30, 40), torch.tensor([30, 30]))
    with pytest.raises(ValueError, match="values <= T = 30"):
        enc(x, torch.tensor([31, 20]))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvolutionModule(8, 4, "batch")
    with pytest.raises(ValueError, match="conv_norm"):
        ConvolutionModule(8, 3, "group")

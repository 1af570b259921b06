"""Losses against independent references: torchaudio's rnnt_loss and node-by-node DPs."""

import math

import numpy as np
import pytest
import torch
import torchaudio.functional as taF

import asr_recipes.rnnt as k2
from tests.rnnt.brute_force import log_softmax, transducer_log_likelihood


def random_batch(gen, B, T, S, C, dtype=torch.float32, min_frames=1):
    """Random full-joiner logits with per-utterance lengths; the longest fills the tensor."""
    logits = torch.randn(B, T, S + 1, C, generator=gen, dtype=dtype)
    symbols = torch.randint(1, C, (B, S), generator=gen)
    t_len = torch.randint(min_frames, T + 1, (B,), generator=gen)
    s_len = torch.randint(0, S + 1, (B,), generator=gen)
    t_len[0], s_len[0] = T, S
    zeros = torch.zeros(B, dtype=torch.int64)
    boundary = torch.stack([zeros, zeros, s_len, t_len], dim=1)
    return logits, symbols, boundary


def torchaudio_loss(logits, symbols, boundary, blank=0):
    return taF.rnnt_loss(
        logits,
        symbols.int(),
        boundary[:, 3].int(),
        boundary[:, 2].int(),
        blank=blank,
        reduction="none",
        clamp=-1,
    )


@pytest.mark.parametrize("seed", range(6))
def test_full_loss_and_gradient_equal_torchaudio(seed):
    gen = torch.Generator().manual_seed(seed)
    B = int(torch.randint(1, 9, (1,), generator=gen))
    T = int(torch.randint(1, 101, (1,), generator=gen))
    S = int(torch.randint(0, 31, (1,), generator=gen))
    C = int(torch.randint(2, 101, (1,), generator=gen))
    blank = int(torch.randint(0, C, (1,), generator=gen))
    logits, symbols, boundary = random_batch(gen, B, T, S, C)
    symbols = torch.where(symbols == blank, (symbols + 1) % C, symbols)  # torchaudio forbids blank targets

    ours_in = logits.clone().requires_grad_()
    ours = k2.rnnt_loss(ours_in, symbols, blank, boundary, reduction="none")
    ref_in = logits.clone().requires_grad_()
    ref = torchaudio_loss(ref_in, symbols, boundary, blank)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)

    weights = torch.rand(B, generator=gen)  # a non-uniform upstream gradient
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_full_loss_float64_equals_node_by_node_dp(rnnt_type):
    # torchaudio only takes float32/16, so float64 is checked against the plain DP.
    gen = torch.Generator().manual_seed(7)
    B, T, S, C = 4, 9, 6, 7
    logits, symbols, boundary = random_batch(gen, B, T, S, C, dtype=torch.float64)
    if rnnt_type != "regular":
        boundary[:, 2] = torch.minimum(boundary[:, 2], boundary[:, 3])
    loss = k2.rnnt_loss(logits, symbols, 0, boundary, rnnt_type=rnnt_type, delay_penalty=0.3, reduction="none")
    lp = log_softmax(logits.numpy())
    for b in range(B):
        S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
        ref = -transducer_log_likelihood(lp[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type, delay_penalty=0.3)
        assert math.isclose(float(loss[b]), ref, rel_tol=1e-7, abs_tol=1e-9)


def test_reductions():
    gen = torch.Generator().manual_seed(1)
    logits, symbols, boundary = random_batch(gen, 3, 12, 4, 6)
    per_utt = k2.rnnt_loss(logits, symbols, 0, boundary, reduction="none")
    assert per_utt.shape == (3,)
    torch.testing.assert_close(k2.rnnt_loss(logits, symbols, 0, boundary, reduction="sum"), per_utt.sum())
    torch.testing.assert_close(k2.rnnt_loss(logits, symbols, 0, boundary), per_utt.mean())


@pytest.mark.parametrize("seed", range(4))
def test_simple_loss_equals_torchaudio_on_additive_logits(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    B, T, S, C = 5, 40, 12, 30
    _, symbols, boundary = random_batch(gen, B, T, S, C)
    am = torch.randn(B, T, C, generator=gen) * 3
    lm = torch.randn(B, S + 1, C, generator=gen) * 3
    ours = k2.rnnt_loss_simple(lm, am, symbols, 0, boundary, reduction="none")
    ref = torchaudio_loss((am[:, :, None] + lm[:, None]).contiguous(), symbols, boundary)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_smoothed_with_zero_scales_equals_simple(rnnt_type):
    gen = torch.Generator().manual_seed(3)
    B, T, S, C = 4, 20, 8, 15
    _, symbols, boundary = random_batch(gen, B, T, S, C, min_frames=S)
    am, lm = torch.randn(B, T, C, generator=gen), torch.randn(B, S + 1, C, generator=gen)
    simple = k2.rnnt_loss_simple(lm, am, symbols, 0, boundary, rnnt_type=rnnt_type, reduction="none")
    smoothed = k2.rnnt_loss_smoothed(lm, am, symbols, 0, 0.0, 0.0, boundary, rnnt_type=rnnt_type, reduction="none")
    torch.testing.assert_close(smoothed, simple, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_lm_only_smoothing_is_the_simple_loss_without_acoustics(rnnt_type):
    """lm_only_scale=1 keeps only log_softmax(lm): the simple loss with am = 0 (regression: the
    regular lattice's -inf column times the combined scale 0 used to give NaN)."""
    gen = torch.Generator().manual_seed(5)
    B, T, S, C = 3, 12, 5, 9
    _, symbols, boundary = random_batch(gen, B, T, S, C, min_frames=S)
    am, lm = torch.randn(B, T, C, generator=gen), torch.randn(B, S + 1, C, generator=gen)
    loss, (px_grad, py_grad) = k2.rnnt_loss_smoothed(lm, am, symbols, 0, 1.0, 0.0, boundary, rnnt_type=rnnt_type,
                                                     reduction="none", return_grad=True)
    lm_only = k2.rnnt_loss_simple(lm, torch.zeros_like(am), symbols, 0, boundary, rnnt_type=rnnt_type,
                                  reduction="none")
    torch.testing.assert_close(loss, lm_only, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(px_grad).all() and torch.isfinite(py_grad).all()


@pytest.mark.parametrize("scales", [(0.0, 0.0), (0.25, 0.0), (0.1, 0.1)])
def test_simple_and_smoothed_invariant_to_per_frame_and_per_position_constants(scales):
    gen = torch.Generator().manual_seed(5)
    B, T, S, C = 3, 15, 5, 11
    _, symbols, boundary = random_batch(gen, B, T, S, C)
    am, lm = torch.randn(B, T, C, generator=gen), torch.randn(B, S + 1, C, generator=gen)
    am_shifted = am + 10 * torch.randn(B, T, 1, generator=gen)
    lm_shifted = lm + 10 * torch.randn(B, S + 1, 1, generator=gen)
    lm_scale, am_scale = scales
    base = k2.rnnt_loss_smoothed(lm, am, symbols, 0, lm_scale, am_scale, boundary, reduction="none")
    shifted = k2.rnnt_loss_smoothed(lm_shifted, am_shifted, symbols, 0, lm_scale, am_scale, boundary, reduction="none")
    torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_smoothed_loss_equals_interpolated_node_by_node_dp(rnnt_type):
    """lm/am-only interpolation written out from its definition, in float64."""
    gen = torch.Generator().manual_seed(11)
    B, T, S, C = 3, 8, 5, 6
    lm_scale, am_scale = 0.25, 0.15
    _, symbols, boundary = random_batch(gen, B, T, S, C, dtype=torch.float64, min_frames=S)
    am = torch.randn(B, T, C, generator=gen, dtype=torch.float64)
    lm = torch.randn(B, S + 1, C, generator=gen, dtype=torch.float64)
    loss = k2.rnnt_loss_smoothed(lm, am, symbols, 0, lm_scale, am_scale, boundary, rnnt_type=rnnt_type, reduction="none")
    a, l = am.numpy(), lm.numpy()
    joint = log_softmax(a[:, :, None, :] + l[:, None, :, :])  # (B, T, S+1, C)
    lm_only = log_softmax(l)[:, None, :, :]  # (B, 1, S+1, C)
    unigram = np.exp(log_softmax(l)).mean(axis=(0, 1))  # averaged over batch and positions
    am_only = log_softmax(a + np.log(unigram))[:, :, None, :]  # (B, T, 1, C)
    mixed = (1 - lm_scale - am_scale) * joint + lm_scale * lm_only + am_scale * am_only
    for b in range(B):
        S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
        ref = -transducer_log_likelihood(mixed[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type)
        assert math.isclose(float(loss[b]), ref, rel_tol=1e-7)


def test_losses_upcast_half_precision_and_keep_float64():
    gen = torch.Generator().manual_seed(9)
    logits, symbols, boundary = random_batch(gen, 2, 10, 3, 8)
    ref = k2.rnnt_loss(logits, symbols, 0, boundary, reduction="none")
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype).requires_grad_()
        loss = k2.rnnt_loss(low, symbols, 0, boundary, reduction="none")
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, ref, rtol=2e-2, atol=0.5)
        loss.sum().backward()
        assert low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()
    assert k2.rnnt_loss(logits.double(), symbols, 0, boundary).dtype == torch.float64


def test_degenerate_lattices_give_no_nan():
    # S = 0 labels, T = 1 frame, and a padded batch entry with zero labels.
    logits = torch.randn(3, 1, 1, 5, requires_grad=True)
    symbols = torch.zeros(3, 0, dtype=torch.int64)
    loss = k2.rnnt_loss(logits, symbols, 0, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    ref = -torch.log_softmax(logits.detach(), -1)[:, 0, 0, 0].sum()
    torch.testing.assert_close(loss.detach(), ref)

    am, lm = torch.randn(2, 1, 4, requires_grad=True), torch.randn(2, 2, 4, requires_grad=True)
    loss, (px_grad, py_grad) = k2.rnnt_loss_simple(lm, am, torch.tensor([[1], [2]]), 0, return_grad=True)
    loss.backward()
    assert torch.isfinite(am.grad).all() and torch.isfinite(lm.grad).all()
    assert torch.isfinite(px_grad).all() and torch.isfinite(py_grad).all()


def test_impossible_utterance_has_infinite_loss_and_zero_gradient():
    # Every symbol arc is -inf, so no path reaches s_end = 2: score -inf, gradients 0, never NaN.
    px = torch.full((1, 2, 3), float("-inf"), requires_grad=True)
    py = torch.zeros(1, 3, 2, requires_grad=True)
    scores = k2.mutual_information_recursion(px, py)
    scores.sum().backward()
    assert scores.item() == float("-inf")
    assert not torch.isnan(px.grad).any() and not torch.isnan(py.grad).any()
    assert (py.grad == 0).all()


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_symbol_start_leaves_only_alignments_without_early_symbols(rnnt_type):
    # Frames before symbol_start are blank-only: the loss is the node-by-node DP over the
    # alignments that emit nothing there, in the full, pruned (full-width windows) and
    # simple losses alike; a start too late for the transcript is clamped to the latest one
    # that still leaves a path (T-1 regular, T-U otherwise), so the loss stays finite.
    gen = torch.Generator().manual_seed(11)
    B, T, S, C = 4, 9, 3, 6
    logits, symbols, boundary = random_batch(gen, B, T, S, C, dtype=torch.float64, min_frames=4)
    if rnnt_type != "regular":
        boundary[:, 2] = torch.minimum(boundary[:, 2], boundary[:, 3])
    start = torch.tensor([3, 0, 5, 100])
    loss = k2.rnnt_loss(logits, symbols, 0, boundary, rnnt_type=rnnt_type, reduction="none", symbol_start=start)
    lp = log_softmax(logits.numpy())
    for b in range(B):
        S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
        latest = T_b - 1 if rnnt_type == "regular" else T_b - S_b
        ref = -transducer_log_likelihood(lp[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type,
                                         symbol_start=min(int(start[b]), latest))
        assert math.isfinite(ref)
        assert math.isclose(float(loss[b]), ref, rel_tol=1e-7, abs_tol=1e-9)
        if int(start[b]) > 0 and S_b > 0:  # the constraint really removed alignments
            free = -transducer_log_likelihood(lp[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type)
            assert float(loss[b]) > free

    ranges = torch.arange(S + 1).expand(B, T, S + 1).contiguous()  # every symbol position: nothing pruned
    pruned_logits = torch.gather(logits, 2, ranges.unsqueeze(-1).expand(B, T, S + 1, C))
    pruned = k2.rnnt_loss_pruned(pruned_logits, symbols, ranges, 0, boundary, rnnt_type=rnnt_type,
                                 reduction="none", symbol_start=start)
    torch.testing.assert_close(pruned, loss)

    am, lm = torch.randn(B, T, C, generator=gen, dtype=torch.float64), torch.randn(B, S + 1, C, generator=gen,
                                                                                     dtype=torch.float64)
    simple = k2.rnnt_loss_simple(lm, am, symbols, 0, boundary, rnnt_type=rnnt_type, reduction="none",
                                 symbol_start=start)
    additive = log_softmax((am.unsqueeze(2) + lm.unsqueeze(1)).numpy())  # (B, T, S+1, C)
    for b in range(B):
        S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
        latest = T_b - 1 if rnnt_type == "regular" else T_b - S_b
        ref = -transducer_log_likelihood(additive[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type,
                                         symbol_start=min(int(start[b]), latest))
        assert math.isclose(float(simple[b]), ref, rel_tol=1e-7, abs_tol=1e-9)

"""HAT (rnnt_loss_pruned(use_hat_loss=True), get_hat_logprobs_pruned) against brute force and
against the full HAT loss computed directly with torchaudio."""

import numpy as np
import pytest
import torch
import torchaudio.functional as taF

import asr_recipes.rnnt as k2
from tests.rnnt.brute_force import transducer_log_likelihood
from tests.rnnt.test_pruning import lengths_and_boundary, simple_occupations


def hat_log_probs_numpy(logits: np.ndarray) -> np.ndarray:
    """HAT's normalised distribution, written from the paper's definition (arXiv 2003.07705):
    P(blank) = sigmoid(l0); P(c > 0) = (1 - sigmoid(l0)) * exp(l_c) / sum_{k > 0} exp(l_k)."""
    l0 = logits[..., :1]
    p_blank = 1.0 / (1.0 + np.exp(-l0))
    labels = logits[..., 1:]
    m = labels.max(axis=-1, keepdims=True)
    e = np.exp(labels - m)
    p_labels = (1.0 - p_blank) * e / e.sum(axis=-1, keepdims=True)
    return np.log(np.concatenate([p_blank, p_labels], axis=-1))


def hat_log_probs_torch(logits: torch.Tensor) -> torch.Tensor:
    """The same distribution with torch ops (for an autograd reference)."""
    p_blank = torch.sigmoid(logits[..., :1])
    p_labels = (1 - p_blank) * torch.softmax(logits[..., 1:], dim=-1)
    return torch.log(torch.cat([p_blank, p_labels], dim=-1))


def test_hat_distribution_is_normalised():
    logits = torch.randn(3, 4, 5, 7, dtype=torch.float64) * 3
    lp = hat_log_probs_numpy(logits.numpy())
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_hat_pruned_loss_equals_brute_force_over_the_pruned_lattice(rnnt_type):
    gen = torch.Generator().manual_seed(20)
    for trial in range(4):
        B, T, S, C = 3, 9, 5, 6
        s_range = 2 + trial % 3
        boundary = lengths_and_boundary(gen, B, T, S, rnnt_type != "regular")
        _, _, symbols, px_grad, py_grad = simple_occupations(gen, B, T, S, C, boundary, rnnt_type, 2.0)
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
        R = ranges.shape[2]
        full_logits = torch.randn(B, T, S + 1, C, generator=gen, dtype=torch.float64) * 2
        pruned_logits = torch.gather(full_logits, 2, ranges.unsqueeze(-1).expand(B, T, R, C))
        loss = k2.rnnt_loss_pruned(pruned_logits, symbols, ranges, 0, boundary, rnnt_type, delay_penalty=0.1,
                                   reduction="none", use_hat_loss=True)
        lp = hat_log_probs_numpy(full_logits.numpy())
        for b in range(B):
            S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
            keep = np.zeros((T, S + 1), dtype=bool)
            for t in range(T):
                keep[t, ranges[b, t].numpy()] = True
            ref = -transducer_log_likelihood(lp[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type, keep, delay_penalty=0.1)
            # 1e-7: the delay penalty is formed in float32, as in k2 (the lattice itself is float64)
            assert abs(float(loss[b]) - ref) <= 1e-7 * max(1.0, abs(ref)), (trial, b, float(loss[b]), ref)


def test_hat_pruned_loss_with_full_range_equals_full_hat_loss_and_gradient():
    # With s_range >= S + 1 nothing is pruned: the loss is the full transducer loss of the HAT
    # distribution, which torchaudio computes from those log-probs (log_softmax leaves a
    # normalised distribution unchanged).
    gen = torch.Generator().manual_seed(21)
    B, T, S, C = 4, 14, 6, 9
    boundary = lengths_and_boundary(gen, B, T, S, False)
    _, _, symbols, px_grad, py_grad = simple_occupations(gen, B, T, S, C, boundary, "regular", 1.0)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, S + 4)
    assert ranges.shape[2] == S + 1 and (ranges == torch.arange(S + 1)).all()
    full_logits = torch.randn(B, T, S + 1, C, generator=gen, dtype=torch.float64)

    ours_in = full_logits.clone().requires_grad_()
    ours = k2.rnnt_loss_pruned(ours_in, symbols, ranges, 0, boundary, reduction="none", use_hat_loss=True)
    ref_in = full_logits.clone().float().requires_grad_()
    ref = taF.rnnt_loss(hat_log_probs_torch(ref_in), symbols.int(), boundary[:, 3].int(), boundary[:, 2].int(),
                        blank=0, reduction="none", clamp=-1)
    torch.testing.assert_close(ours.float(), ref, rtol=1e-5, atol=1e-4)

    weights = torch.rand(B, generator=gen)
    (ours * weights.double()).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad.float(), ref_in.grad, rtol=1e-4, atol=1e-5)


def test_hat_logprobs_are_not_the_softmax_ones():
    # Guards against use_hat_loss being ignored: the two factorisations differ on the same logits.
    gen = torch.Generator().manual_seed(22)
    logits = torch.randn(1, 3, 2, 5, generator=gen)
    ranges = torch.tensor([[[0, 1], [0, 1], [1, 2]]])
    symbols, boundary = torch.tensor([[1, 2]]), torch.tensor([[0, 0, 2, 3]])
    hat = k2.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, "regular", 0.0, "none", True)  # k2's order
    softmax = k2.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, reduction="none")
    assert not torch.allclose(hat, softmax)
    px, py = k2.get_hat_logprobs_pruned(logits, symbols, ranges, 0, boundary)
    assert px.shape == (1, 2, 4) and py.shape == (1, 3, 3)
    torch.testing.assert_close(-k2.mutual_information_recursion(px, py, boundary), hat)


def test_hat_gradcheck_float64():
    gen = torch.Generator().manual_seed(23)
    B, T, S, C, R = 2, 5, 3, 4, 2
    boundary = torch.tensor([[0, 0, 3, 5], [0, 0, 1, 3]])
    symbols = torch.randint(1, C, (B, S), generator=gen)
    ranges = torch.tensor([[0, 1, 1, 2, 2], [0, 0, 0, 0, 0]]).unsqueeze(-1) + torch.arange(R)
    logits = torch.randn(B, T, R, C, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: k2.rnnt_loss_pruned(x, symbols, ranges, 0, boundary, reduction="none", use_hat_loss=True), (logits,)
    )


def test_hat_needs_blank_zero():
    logits = torch.randn(1, 2, 2, 4)
    ranges = torch.tensor([[[0, 1], [0, 1]]])
    symbols, boundary = torch.tensor([[1]]), torch.tensor([[0, 0, 1, 2]])
    with pytest.raises(ValueError, match="HAT needs termination_symbol == 0"):
        k2.rnnt_loss_pruned(logits, symbols, ranges, 3, boundary, use_hat_loss=True)
    with pytest.raises(ValueError, match="HAT needs termination_symbol == 0"):
        k2.get_hat_logprobs_pruned(logits, symbols, ranges, 2, boundary)

"""Bad input raises ValueError naming the argument and the reason."""

import pytest
import torch

import asr_recipes.rnnt as k2


def simple_inputs(B=2, T=6, S=3, C=5):
    return torch.randn(B, S + 1, C), torch.randn(B, T, C), torch.randint(1, C, (B, S))


def test_mismatched_shapes():
    lm, am, symbols = simple_inputs()
    with pytest.raises(ValueError, match="lm must have shape"):
        k2.rnnt_loss_simple(lm[:, :, :4], am, symbols, 0)
    with pytest.raises(ValueError, match="symbols must have shape"):
        k2.rnnt_loss_simple(lm, am, symbols[:, :2], 0)
    with pytest.raises(ValueError, match="py must have shape"):
        k2.mutual_information_recursion(torch.randn(2, 3, 7), torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="px's last dim"):
        k2.mutual_information_recursion(torch.randn(2, 3, 9), torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="logits must have shape"):
        k2.rnnt_loss(torch.randn(2, 6, 4), symbols, 0)
    with pytest.raises(ValueError, match="ranges must have shape"):
        k2.rnnt_loss_pruned(torch.randn(2, 6, 2, 5), symbols, torch.zeros(2, 6, 3, dtype=torch.long), 0,
                            torch.tensor([[0, 0, 3, 6]] * 2))


def test_symbol_ids_out_of_range():
    lm, am, symbols = simple_inputs()
    symbols[1, 2] = 5
    with pytest.raises(ValueError, match=r"symbols must be token ids in \[0, C\) = \[0, 5\)"):
        k2.rnnt_loss_simple(lm, am, symbols, 0)
    with pytest.raises(ValueError, match="symbols must be token ids"):
        k2.rnnt_loss(torch.randn(2, 6, 4, 5), symbols, 0)
    with pytest.raises(ValueError, match="termination_symbol"):
        k2.rnnt_loss_simple(lm, am, symbols.clamp(max=4), 7)


def test_s_range_too_small_for_regular():
    px_grad, py_grad = torch.rand(2, 3, 7), torch.rand(2, 4, 6)
    boundary = torch.tensor([[0, 0, 3, 6], [0, 0, 2, 4]])
    with pytest.raises(ValueError, match="s_range must be >= 2"):
        k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 1)
    k2.get_rnnt_prune_ranges(px_grad[:, :, :6].contiguous(), py_grad, boundary, 1)  # modified: fine
    with pytest.raises(ValueError, match="boundary is required"):
        k2.get_rnnt_prune_ranges(px_grad, py_grad, None, 3)


def test_modified_needs_at_least_as_many_frames_as_symbols():
    lm, am, symbols = simple_inputs(T=2, S=3)
    with pytest.raises(ValueError, match="needs T >= S"):
        k2.rnnt_loss_simple(lm, am, symbols, 0, rnnt_type="modified")
    lm, am, symbols = simple_inputs(T=6, S=3)
    boundary = torch.tensor([[0, 0, 3, 6], [0, 0, 3, 2]])
    with pytest.raises(ValueError, match="utterance 1 has 3 symbols but only 2 frames"):
        k2.rnnt_loss_simple(lm, am, symbols, 0, boundary, rnnt_type="constrained")


def test_boundary_outside_tensor():
    lm, am, symbols = simple_inputs()
    for bad in ([0, 0, 4, 6], [0, 0, 3, 7], [1, 0, 0, 6], [0, -1, 3, 6]):
        boundary = torch.tensor([[0, 0, 3, 6], bad])
        with pytest.raises(ValueError, match=r"boundary\[1\] = .* is outside the tensor"):
            k2.rnnt_loss_simple(lm, am, symbols, 0, boundary)
    with pytest.raises(ValueError, match=r"boundary must be a \(B, 4\)"):
        k2.rnnt_loss_simple(lm, am, symbols, 0, torch.tensor([[0, 0, 3, 6]]))


def test_unknown_options():
    lm, am, symbols = simple_inputs()
    with pytest.raises(ValueError, match="rnnt_type must be one of"):
        k2.rnnt_loss_simple(lm, am, symbols, 0, rnnt_type="monotonic")
    with pytest.raises(ValueError, match="reduction must be one of"):
        k2.rnnt_loss_simple(lm, am, symbols, 0, reduction="avg")

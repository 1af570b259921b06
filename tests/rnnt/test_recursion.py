"""mutual_information_recursion: scores, occupation probabilities, gradients, boundaries."""

import math
import random

import pytest
import torch

import asr_recipes.rnnt as k2
from tests.rnnt.brute_force import node_by_node_score, random_boundary


def random_lattice(rng, modified, dtype=torch.float64, S_max=6, T_max=8):
    B = rng.randint(1, 4)
    S = rng.randint(0, S_max)
    T = rng.randint(max(S, 1) if modified else 1, T_max)
    px = torch.randn(B, S, T if modified else T + 1, dtype=dtype)
    py = torch.randn(B, S + 1, T, dtype=dtype)
    return px, py, random_boundary(rng, B, S, T, modified)


@pytest.mark.parametrize("modified", [False, True])
def test_scores_match_node_by_node_recursion_with_general_boundaries(modified):
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(25):
        px, py, boundary = random_lattice(rng, modified)
        scores = k2.mutual_information_recursion(px, py, boundary)
        for b in range(px.shape[0]):
            ref = node_by_node_score(px[b], py[b], boundary[b].tolist(), modified)
            assert math.isclose(float(scores[b]), float(ref), rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("modified", [False, True])
def test_returned_occupations_equal_autograd_gradients_of_reference(modified):
    rng = random.Random(1)
    torch.manual_seed(1)
    for _ in range(10):
        px, py, boundary = random_lattice(rng, modified)
        scores, (px_grad, py_grad) = k2.mutual_information_recursion(px, py, boundary, return_grad=True)
        for b in range(px.shape[0]):
            px_b, py_b = px[b].clone().requires_grad_(), py[b].clone().requires_grad_()
            ref = node_by_node_score(px_b, py_b, boundary[b].tolist(), modified)
            if not ref.requires_grad:  # begin == end: the score is a constant 0
                ref_px, ref_py = torch.zeros_like(px_b), torch.zeros_like(py_b)
            else:
                ref_px, ref_py = torch.autograd.grad(ref, [px_b, py_b], allow_unused=True)
                ref_px = torch.zeros_like(px_b) if ref_px is None else ref_px
                ref_py = torch.zeros_like(py_b) if ref_py is None else ref_py
            torch.testing.assert_close(px_grad[b], ref_px)
            torch.testing.assert_close(py_grad[b], ref_py)
        assert ((px_grad >= 0) & (px_grad <= 1 + 1e-9)).all()
        assert ((py_grad >= 0) & (py_grad <= 1 + 1e-9)).all()
        # and the autograd path through the library returns the same occupations
        px.requires_grad_()
        py.requires_grad_()
        auto_px, auto_py = torch.autograd.grad(k2.mutual_information_recursion(px, py, boundary).sum(), [px, py])
        torch.testing.assert_close(auto_px, px_grad)
        torch.testing.assert_close(auto_py, py_grad)


def test_blank_occupancy_of_each_frame_sums_to_one():
    # Every regular path leaves each frame exactly once through a blank arc.
    gen = torch.Generator().manual_seed(2)
    B, S, T, C = 4, 7, 12, 9
    am, lm = torch.randn(B, T, C, generator=gen), torch.randn(B, S + 1, C, generator=gen)
    symbols = torch.randint(1, C, (B, S), generator=gen)
    t_len, s_len = torch.tensor([12, 9, 5, 3]), torch.tensor([7, 4, 7, 0])
    boundary = torch.stack([torch.zeros(B, dtype=torch.long)] * 2 + [s_len, t_len], dim=1)
    _, (px_grad, py_grad) = k2.rnnt_loss_simple(lm, am, symbols, 0, boundary, return_grad=True)
    frame_mass = py_grad.sum(dim=1)  # (B, T)
    for b in range(B):
        torch.testing.assert_close(frame_mass[b, : t_len[b]], torch.ones(int(t_len[b])), rtol=1e-5, atol=1e-5)
        assert (frame_mass[b, t_len[b]:].abs() < 1e-6).all()


@pytest.mark.parametrize("modified", [False, True])
def test_gradcheck_float64(modified):
    rng = random.Random(3)
    torch.manual_seed(3)
    px, py, boundary = random_lattice(rng, modified, S_max=4, T_max=5)
    px.requires_grad_()
    py.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: k2.mutual_information_recursion(a, b, boundary), (px, py))


def test_float32_and_half_inputs():
    torch.manual_seed(4)
    px, py = torch.randn(2, 3, 6), torch.randn(2, 4, 5)
    ref = k2.mutual_information_recursion(px.double(), py.double())
    torch.testing.assert_close(k2.mutual_information_recursion(px, py).double(), ref, rtol=1e-6, atol=1e-5)
    half = k2.mutual_information_recursion(px.half(), py.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.double(), ref, rtol=1e-2, atol=0.1)


def test_autograd_records_one_node_not_one_per_step():
    px = torch.randn(2, 30, 61, requires_grad=True)
    py = torch.randn(2, 31, 60, requires_grad=True)
    scores = k2.mutual_information_recursion(px, py)
    # scores' grad_fn is the custom Function; its inputs are the leaves directly.
    nodes, frontier = set(), [scores.grad_fn]
    while frontier:
        fn = frontier.pop()
        if fn is None or fn in nodes:
            continue
        nodes.add(fn)
        frontier.extend(f for f, _ in fn.next_functions)
    assert len(nodes) <= 4, [type(n).__name__ for n in nodes]


def test_joint_recursion_splits_total_score_and_has_occupation_gradients():
    torch.manual_seed(5)
    B, S, T = 3, 4, 6
    px_terms = [torch.randn(B, S, T + 1, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    py_terms = [torch.randn(B, S + 1, T, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    for x in px_terms:  # regular lattices have -inf in the last column
        with torch.no_grad():
            x[:, :, T] = float("-inf")
    parts = k2.joint_mutual_information_recursion(px_terms, py_terms)
    assert parts.shape == (3, B)
    px_tot, py_tot = sum(px_terms), sum(py_terms)
    total, (px_grad, py_grad) = k2.mutual_information_recursion(px_tot.detach(), py_tot.detach(), return_grad=True)
    torch.testing.assert_close(parts.sum(0), total)
    assert torch.isfinite(parts).all()
    parts[1].sum().backward()
    torch.testing.assert_close(px_terms[1].grad, px_grad)
    torch.testing.assert_close(py_terms[1].grad, py_grad)
    assert (px_terms[0].grad == 0).all()

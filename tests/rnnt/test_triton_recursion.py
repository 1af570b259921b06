"""Triton lattice recursion (asr_recipes.rnnt.triton_recursion) against independent references.

References: the recursion written node by node with differentiable torch ops (its autograd
gradients are the occupation probabilities), and the lead's wavefront PyTorch implementation
``recursion_torch``. Runs compiled on CUDA when present, else in Triton's interpreter on CPU
(small shapes: the interpreter executes every program in Python).
"""

import random

import pytest
import torch

from tests.rnnt.triton_device import DEVICE, ON_CUDA, kernel_module  # first: may set TRITON_INTERPRET

from asr_recipes.rnnt.mutual_information import recursion_torch
from tests.rnnt.brute_force import node_by_node_score, random_boundary

NEG_INF = float("-inf")


@pytest.fixture(scope="module")
def kernels():
    return kernel_module("triton_recursion")


def autograd_dp(px, py, boundary, modified):
    """Scores (B,) of the recursion's defining equations, one node at a time, differentiable."""
    return torch.stack([node_by_node_score(px[b], py[b], row, modified) for b, row in enumerate(boundary.tolist())])


def run(kernels, px, py, boundary, need_grad=True):
    """recursion_triton on DEVICE, results back on CPU."""
    bnd = None if boundary is None else boundary.to(DEVICE)
    out = kernels.recursion_triton(px.to(DEVICE), py.to(DEVICE), bnd, need_grad)
    return tuple(None if x is None else x.cpu() for x in out)


def assert_matches_recursion_torch(kernels, px, py, boundary):
    """float32 kernels vs recursion_torch: relative error <= 1e-5 against its float32 run.

    Compiled on a GPU, exp/log are hardware approximations, so float32 rounding differs from the
    CPU's by a few ulps of alpha (~1e-5 of occupation at |score| ~ 100): there the reference is
    recursion_torch in float64, with occupations to 5e-5.
    """
    scores, px_grad, py_grad = run(kernels, px, py, boundary)
    if ON_CUDA:
        ref_scores, ref_px_grad, ref_py_grad = recursion_torch(px.double(), py.double(), boundary, True)
        scores, px_grad, py_grad = scores.double(), px_grad.double(), py_grad.double()
        occ_tol = dict(rtol=0, atol=5e-5)
    else:
        ref_scores, ref_px_grad, ref_py_grad = recursion_torch(px, py, boundary, True)
        occ_tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(px_grad, ref_px_grad, **occ_tol)
    torch.testing.assert_close(py_grad, ref_py_grad, **occ_tol)
    assert not torch.isnan(px_grad).any() and not torch.isnan(py_grad).any()
    return scores, px_grad, py_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("modified", [False, True])
def test_scores_and_occupations_equal_autograd_of_node_by_node_dp(kernels, modified, dtype):
    rng = random.Random(10 + modified)
    gen = torch.Generator().manual_seed(10 + modified)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for _ in range(3):
        B, S = 3, rng.randint(1, 5)
        T = rng.randint(S if modified else 1, 7)
        px = torch.randn(B, S, T if modified else T + 1, generator=gen, dtype=torch.float64)
        py = torch.randn(B, S + 1, T, generator=gen, dtype=torch.float64)
        boundary = random_boundary(rng, B, S, T, modified)
        boundary[0] = torch.tensor([0, 0, S, T])  # one full-size lattice per batch

        px_ref, py_ref = px.clone().requires_grad_(), py.clone().requires_grad_()
        ref = autograd_dp(px_ref, py_ref, boundary, modified)
        ref_px_grad, ref_py_grad = torch.autograd.grad(ref.sum(), [px_ref, py_ref], allow_unused=True)

        scores, px_grad, py_grad = run(kernels, px.to(dtype), py.to(dtype), boundary)
        assert scores.dtype == px_grad.dtype == py_grad.dtype == dtype
        torch.testing.assert_close(scores.double(), ref.detach(), **tol)
        torch.testing.assert_close(px_grad.double(), ref_px_grad, **tol)
        torch.testing.assert_close(py_grad.double(), ref_py_grad, **tol)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_variable_lengths_equal_recursion_torch_in_float32(kernels, rnnt_type):
    gen = torch.Generator().manual_seed(20)
    B, S, T = 4, 9, 14
    modified = rnnt_type != "regular"
    px = torch.randn(B, S, T if modified else T + 1, generator=gen) * 3
    py = torch.randn(B, S + 1, T, generator=gen) * 3
    if rnnt_type == "regular":
        px[:, :, T] = NEG_INF  # the regular lattice's last column
    if rnnt_type == "constrained":
        px = px + py[:, 1:]  # a symbol arc also pays the next context's blank
    t_len = torch.tensor([T, 11, 6, 1])
    s_len = torch.tensor([S, 6, 0, 1]) if modified else torch.tensor([S, 9, 0, 3])
    zeros = torch.zeros(B, dtype=torch.int64)
    boundary = torch.stack([zeros, zeros, s_len, t_len], dim=1)
    scores, _, py_grad = assert_matches_recursion_torch(kernels, px, py, boundary)
    assert torch.isfinite(scores).all()
    if not modified:  # every regular path leaves each of its frames once through a blank
        for b in range(B):
            frame_mass = py_grad[b].sum(0)
            # float32 occupations are exp(alpha + w + beta - score) with |score| ~ 100: ~1e-5 each.
            ones = torch.ones(int(t_len[b]), dtype=frame_mass.dtype)
            torch.testing.assert_close(frame_mass[: t_len[b]], ones, rtol=0, atol=1e-4)
            assert (frame_mass[t_len[b]:] == 0).all()


@pytest.mark.parametrize("modified", [False, True])
def test_pruned_style_lattices_full_of_minus_infinity(kernels, modified):
    # Each frame keeps a random window of 3 label positions (-inf elsewhere); some utterances
    # end up with no path at all.
    gen = torch.Generator().manual_seed(30 + modified)
    B, S, T = 6, 7, 9
    px = torch.randn(B, S, T if modified else T + 1, generator=gen)
    py = torch.randn(B, S + 1, T, generator=gen)
    starts = torch.randint(0, S - 1, (B, T), generator=gen).sort(dim=1).values  # (B, T)
    pos = torch.arange(S + 1).reshape(1, S + 1, 1)
    kept = (pos >= starts.unsqueeze(1)) & (pos < starts.unsqueeze(1) + 3)  # (B, S+1, T)
    py = py.masked_fill(~kept, NEG_INF)
    px[:, :, :T] = px[:, :, :T].masked_fill(~kept[:, :S], NEG_INF)
    if not modified:
        px[:, :, T] = NEG_INF
    scores, px_grad, py_grad = assert_matches_recursion_torch(kernels, px, py, None)
    assert (scores == NEG_INF).any() and torch.isfinite(scores).any(), "want both kinds of utterance"
    dead = scores == NEG_INF
    assert (px_grad[dead] == 0).all() and (py_grad[dead] == 0).all()


@pytest.mark.parametrize("modified", [False, True])
def test_degenerate_lattices(kernels, modified):
    # S = 0 (blanks only), T = 1, an empty box (begin == end), and an impossible utterance.
    for S, T in [(0, 5), (3, 1) if not modified else (1, 1), (0, 1)]:
        px = torch.randn(3, S, T if modified else T + 1)
        py = torch.randn(3, S + 1, T)
        assert_matches_recursion_torch(kernels, px, py, None)
    px, py = torch.randn(3, 2, 4 if modified else 5), torch.randn(3, 3, 4)
    boundary = torch.tensor([[1, 2, 1, 2], [0, 0, 2, 4], [0, 1, 1, 3]])
    px[1] = NEG_INF  # no symbol can be emitted: utterance 1 has no path
    scores, px_grad, py_grad = assert_matches_recursion_torch(kernels, px, py, boundary)
    assert scores[0] == 0.0 and scores[1] == NEG_INF
    assert (px_grad[:2] == 0).all() and (py_grad[:2] == 0).all()


def test_scores_only(kernels):
    gen = torch.Generator().manual_seed(40)
    px, py = torch.randn(3, 4, 7, generator=gen), torch.randn(3, 5, 6, generator=gen)
    boundary = torch.tensor([[0, 0, 4, 6], [1, 1, 3, 5], [0, 0, 0, 2]])
    scores, px_grad, py_grad = run(kernels, px, py, boundary, need_grad=False)
    assert px_grad is None and py_grad is None
    ref = autograd_dp(px.double(), py.double(), boundary, modified=False)
    torch.testing.assert_close(scores.double(), ref, rtol=1e-5, atol=1e-5)


def test_rejects_what_it_cannot_run(kernels):
    with pytest.raises(ValueError, match="float32 or float64"):
        half = dict(dtype=torch.float16)
        kernels.recursion_triton(torch.zeros(1, 2, 4, **half), torch.zeros(1, 3, 3, **half), None, True)
    with pytest.raises(ValueError, match="do not form a lattice"):
        kernels.recursion_triton(torch.zeros(1, 2, 5), torch.zeros(1, 3, 3), None, True)

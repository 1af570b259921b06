"""Fused window log-probs (Triton kernels and PyTorch fallback) and the pruned loss through Triton.

References: log_softmax + gather under autograd in float64, and torchaudio's rnnt_loss. The
kernels run compiled on CUDA when present, else in Triton's interpreter on CPU.
"""

import pytest
import torch
import torchaudio.functional as taF

from tests.rnnt.triton_device import DEVICE, ON_CUDA, kernel_module  # first: may set TRITON_INTERPRET

import asr_recipes.rnnt as k2
from asr_recipes.rnnt import fused_logprobs
from asr_recipes.rnnt.fused_logprobs import window_logprobs

NEG_INF = float("-inf")


@pytest.fixture(params=["triton", "pytorch"])
def path(request, monkeypatch):
    """Which implementation window_logprobs uses; tensors live on the device that selects it."""
    if request.param == "triton":
        kernel_module("triton_logprobs")
        monkeypatch.setattr(fused_logprobs, "INTERPRET_ON_CPU", True)
        return DEVICE
    return torch.device("cpu")


@pytest.fixture
def triton_kernels(monkeypatch):
    """Both kernel modules, with CPU tensors routed to the interpreted window log-prob kernels."""
    logprobs = kernel_module("triton_logprobs")
    monkeypatch.setattr(fused_logprobs, "INTERPRET_ON_CPU", True)
    return kernel_module("triton_recursion"), logprobs


def reference(logits, targets, blank):
    """log_softmax at targets and at blank, float64, differentiable w.r.t. logits."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), log_probs[..., blank]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C", [7, 37, 1500])  # 1500 > 1024: the kernels' chunked (online) normaliser
def test_values_and_gradients_equal_log_softmax_gathers(path, C, dtype):
    gen = torch.Generator().manual_seed(C)
    B, T, R = 2, 3, 4
    logits = torch.randn(B, T, R, C, generator=gen, dtype=dtype) * 4
    logits[0, 0, 0, 1:] = NEG_INF  # a row whose mass is all on label 0
    logits[1, :, :, C // 2] = NEG_INF  # a masked vocabulary entry
    blank = C - 1
    targets = torch.randint(0, C, (B, T, R), generator=gen)
    targets[0, 1] = blank  # the dummy label past the transcript reads blank
    targets[0, 0, 0] = 0
    g_px, g_py = torch.randn(B, T, R, generator=gen), torch.randn(B, T, R, generator=gen)

    x = logits.detach().clone().to(path).requires_grad_()
    px, py = window_logprobs(x, targets.to(path), blank)
    (px * g_px.to(path)).sum().add_((py * g_py.to(path)).sum()).backward()
    x_ref = logits.detach().clone().requires_grad_()
    px_ref, py_ref = reference(x_ref, targets, blank)
    ((px_ref * g_px).sum() + (py_ref * g_py).sum()).backward()

    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    assert px.dtype == py.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(px.cpu().double(), px_ref.detach(), **tol)
    torch.testing.assert_close(py.cpu().double(), py_ref.detach(), **tol)
    torch.testing.assert_close(x.grad.cpu().double(), x_ref.grad.double(), **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32(path, dtype):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 3, 2, 20, generator=gen) * 3).to(dtype)
    targets = torch.randint(0, 20, (2, 3, 2), generator=gen)
    x = logits.detach().clone().to(path).requires_grad_()
    px, py = window_logprobs(x, targets.to(path), 0)
    px.sum().backward()  # py unused: its upstream gradient is zero
    x_ref = logits.double().requires_grad_()
    px_ref, py_ref = reference(x_ref, targets, 0)
    px_ref.sum().backward()
    assert px.dtype == py.dtype == torch.float32 and x.grad.dtype == dtype
    torch.testing.assert_close(px.cpu().double(), px_ref.detach(), rtol=1e-6, atol=1e-6)  # exact from the half input
    torch.testing.assert_close(py.cpu().double(), py_ref.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad.cpu().double(), x_ref.grad.double(), rtol=1e-2, atol=1e-2)  # rounded to half


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="targets must have the shape"):
        window_logprobs(torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="blank must be in"):
        window_logprobs(torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, dtype=torch.long), 5)


def torchaudio_loss(logits, symbols, boundary):
    return taF.rnnt_loss(logits, symbols.int(), boundary[:, 3].int(), boundary[:, 2].int(), blank=0,
                         reduction="none", clamp=-1)


def pruned_loss_through_triton(recursion, logits, symbols, ranges, boundary):
    """rnnt_loss_pruned's steps with the Triton recursion: the lattice from get_rnnt_logprobs_pruned
    (fused kernels), scores and occupations from recursion_triton; backward as the recursion's
    autograd Function does it (occupations times the upstream gradient)."""
    px, py = k2.get_rnnt_logprobs_pruned(logits, symbols, ranges, 0, boundary)
    scores, px_grad, py_grad = recursion.recursion_triton(px.detach(), py.detach(), boundary, True)

    def backward(upstream):  # upstream: d total / d loss, (B,)
        g = -upstream.reshape(-1, 1, 1)
        torch.autograd.backward([px, py], [px_grad * g, py_grad * g])

    return -scores, px, backward


def test_pruned_loss_through_triton_equals_torchaudio_when_nothing_is_pruned(triton_kernels):
    recursion, _ = triton_kernels
    gen = torch.Generator().manual_seed(5)
    B, T, S, C = 3, 7, 4, 9
    full_logits = torch.randn(B, T, S + 1, C, generator=gen) * 2
    symbols = torch.randint(1, C, (B, S), generator=gen)
    t_len, s_len = torch.tensor([T, 5, 2]), torch.tensor([S, 2, 3])
    boundary = torch.stack([torch.zeros(B, dtype=torch.long)] * 2 + [s_len, t_len], dim=1)
    am, lm = torch.randn(B, T, C, generator=gen), torch.randn(B, S + 1, C, generator=gen)
    _, (px_grad, py_grad) = k2.rnnt_loss_simple(lm, am, symbols, 0, boundary, return_grad=True)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, S + 1)
    assert (ranges == torch.arange(S + 1)).all()  # s_range = S+1 keeps every position
    weights = torch.rand(B, generator=gen)

    logits = full_logits.clone().to(DEVICE).requires_grad_()
    loss, px, backward = pruned_loss_through_triton(
        recursion, logits, symbols.to(DEVICE), ranges.to(DEVICE), boundary.to(DEVICE)
    )
    backward(weights.to(DEVICE))
    ref_logits = full_logits.clone().requires_grad_()
    ref = torchaudio_loss(ref_logits, symbols, boundary)
    (ref * weights).sum().backward()
    torch.testing.assert_close(loss.cpu(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits.grad.cpu(), ref_logits.grad, rtol=1e-5, atol=1e-5)

    # The lattice really came from the fused Function.
    seen, frontier = set(), [px.grad_fn]
    while frontier:
        fn = frontier.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            frontier.extend(f for f, _ in fn.next_functions)
    assert "_WindowLogProbsBackward" in {type(fn).__name__ for fn in seen}

    if ON_CUDA:  # the public loss dispatches to the same kernels on CUDA
        public = k2.rnnt_loss_pruned(full_logits.to(DEVICE), symbols.to(DEVICE), ranges.to(DEVICE), 0,
                                     boundary.to(DEVICE), reduction="none")
        torch.testing.assert_close(public.cpu(), ref.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("s_range", [2, 3])
def test_pruned_loss_through_triton_equals_pytorch_path_on_narrow_windows(triton_kernels, s_range):
    # Narrow windows: lattices mostly -inf, as in training.
    recursion, _ = triton_kernels
    gen = torch.Generator().manual_seed(6 + s_range)
    B, T, S, C = 3, 9, 6, 11
    symbols = torch.randint(1, C, (B, S), generator=gen)
    t_len, s_len = torch.tensor([T, 8, 4]), torch.tensor([S, 5, 2])
    boundary = torch.stack([torch.zeros(B, dtype=torch.long)] * 2 + [s_len, t_len], dim=1)
    am, lm = torch.randn(B, T, C, generator=gen) * 2, torch.randn(B, S + 1, C, generator=gen) * 2
    _, (px_grad, py_grad) = k2.rnnt_loss_smoothed(lm, am, symbols, 0, 0.25, 0.0, boundary, return_grad=True)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    pruned_logits = torch.randn(B, T, s_range, C, generator=gen) * 2
    weights = torch.rand(B, generator=gen)

    logits = pruned_logits.clone().to(DEVICE).requires_grad_()
    loss, _, backward = pruned_loss_through_triton(
        recursion, logits, symbols.to(DEVICE), ranges.to(DEVICE), boundary.to(DEVICE)
    )
    backward(weights.to(DEVICE))
    with pytest.MonkeyPatch.context() as mp:  # the PyTorch path: fallback log-probs, recursion_torch
        mp.setattr(fused_logprobs, "INTERPRET_ON_CPU", False)
        ref_logits = pruned_logits.clone().requires_grad_()
        ref = k2.rnnt_loss_pruned(ref_logits, symbols, ranges, 0, boundary, reduction="none")
        (ref * weights).sum().backward()
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(loss.cpu(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits.grad.cpu(), ref_logits.grad, rtol=1e-5, atol=1e-5)

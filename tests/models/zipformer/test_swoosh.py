"""SwooshL / SwooshR: values and derivatives against the float64 formulas, the uint8-coded
derivative (within one level, unbiased), what autograd keeps, and the Triton kernels (compiled
on CUDA, else in Triton's interpreter on CPU) against the same formulas.

Tolerances: float32 results carry one rounding per operation (~4 operations, eps 6e-8) and
log(1 + e) loses e below eps (absolute 6e-8): rtol 4e-7, atol 2e-7. The coded derivative is
off by less than one level, DERIV_STEP = 1.005 / 255.
"""

import math

import pytest
import torch

from tests.rnnt.triton_device import DEVICE, ON_CUDA, kernel_module  # first: may set TRITON_INTERPRET

from asr_recipes.models.zipformer import swoosh
from asr_recipes.models.zipformer.scaling import ActivationDropoutAndLinear
from asr_recipes.models.zipformer.swoosh import DERIV_STEP, SWOOSH_L, SWOOSH_R

FORMULAS = {  # offset, constant of log(1 + exp(x - offset)) - 0.08 x - constant
    "SwooshL": (4.0, 0.035),
    "SwooshR": (1.0, 0.313261687),
}
KINDS = [SWOOSH_L, SWOOSH_R]


def reference(x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, derivative) in float64."""
    offset, constant = FORMULAS[name]
    x = x.double()
    z = x - offset
    value = torch.logaddexp(torch.zeros_like(z), z) - 0.08 * x - constant
    return value, torch.sigmoid(z) - 0.08


def sample(n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64) * 6
    x[:8] = torch.tensor([0.0, 1.0, 4.0, -60.0, 60.0, -1e4, 1e4, -1e-3], dtype=torch.float64)  # edges
    return x.to(dtype)


@pytest.fixture
def triton_swoosh(monkeypatch):
    """The kernel module, with CPU tensors routed to the interpreted kernels."""
    kernels = kernel_module("asr_recipes.models.zipformer.triton_swoosh")
    monkeypatch.setattr(swoosh, "INTERPRET_ON_CPU", True)
    return kernels


def assert_close_to_reference(y, ref, dtype):
    tol = dict(rtol=4e-7, atol=2e-7) if dtype == torch.float32 else dict(rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(y.double(), ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_values_and_exact_derivatives_equal_the_formula(kind, dtype):
    x = sample(5000, 0, dtype)
    value, deriv = reference(x, kind.name)
    assert_close_to_reference(swoosh.swoosh_value(x, kind), value, dtype)
    y, d = swoosh.swoosh_value_and_deriv(x, kind)
    assert y.dtype == dtype and d.dtype == dtype
    assert_close_to_reference(d, deriv, dtype)
    module = swoosh.SwooshL() if kind is SWOOSH_L else swoosh.SwooshR()
    assert_close_to_reference(module(x), value, dtype)


def check_coded_backward(kind, device):
    """Gradient through the autograd path: within one level of the exact derivative and,
    averaged over many elements, unbiased."""
    torch.manual_seed(0)
    x = sample(200_000, 1).to(device).requires_grad_()
    y = swoosh.swoosh(x, kind)
    g = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)).add_(0.5).to(device)  # in [0.5, 1.5)
    y.backward(g)
    value, deriv = reference(x.detach().cpu(), kind.name)
    assert_close_to_reference(y.detach().cpu(), value, torch.float32)
    error = x.grad.cpu().double() / g.cpu().double() - deriv  # the coded derivative's error
    assert error.abs().max() < DERIV_STEP * (1 + 1e-6)
    # stochastic rounding: mean 0, each error within one step, so std of the mean <= step / (2 sqrt(n))
    assert abs(error.mean()) < 5 * DERIV_STEP / (2 * math.sqrt(x.numel()))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_coded_backward_is_within_one_level_and_unbiased(kind):
    check_coded_backward(kind, torch.device("cpu"))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_gradcheck_within_one_level(kind):
    x = (torch.randn(6, 7, dtype=torch.float64) * 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: swoosh.swoosh(t, kind), (x,), eps=1e-6, atol=DERIV_STEP, rtol=0)


def saved_bytes(fn, *args) -> int:
    """Bytes of the tensors autograd keeps for fn(*args)'s backward (parameters included)."""
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(total)


def test_swoosh_keeps_one_byte_per_element():
    x = torch.randn(64, 100, requires_grad=True)
    assert saved_bytes(swoosh.swoosh_l, x) == x.numel()  # the uint8 codes
    assert saved_bytes(lambda t: torch.nn.functional.silu(t), x) == x.numel() * 4  # what plain autograd keeps


def test_activation_dropout_linear_keeps_its_input_not_the_activation():
    torch.manual_seed(0)
    layer = ActivationDropoutAndLinear(96, 8, activation="SwooshL", dropout_p=0.2, dropout_shared_dim=0).train()
    x = torch.randn(50, 3, 96, requires_grad=True)
    mask_bytes = 3 * 96 * 4  # one draw per (utterance, channel), shared over time
    assert saved_bytes(layer, x) == x.numel() * 4 + layer.weight.numel() * 4 + mask_bytes


def test_activation_dropout_linear_gradients_equal_autograd_of_the_formula():
    torch.manual_seed(0)
    layer = ActivationDropoutAndLinear(12, 5, activation="SwooshR").double().train()
    x = torch.randn(4, 7, 12, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    g = torch.randn_like(out)
    out.backward(g)
    x2 = x.detach().clone().requires_grad_()
    w2, b2 = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    ref = torch.nn.functional.linear(_formula(x2, "SwooshR"), w2, b2)
    ref.backward(g)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for ours, theirs in ((x.grad, x2.grad), (layer.weight.grad, w2.grad), (layer.bias.grad, b2.grad)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    layer.eval()
    torch.testing.assert_close(layer(x), ref, rtol=1e-12, atol=1e-12)


def _formula(x: torch.Tensor, name: str) -> torch.Tensor:
    """The formula under autograd (float64)."""
    offset, constant = FORMULAS[name]
    return torch.logaddexp(torch.zeros_like(x), x - offset) - 0.08 * x - constant


def test_activation_dropout_mask_is_shared_along_its_axis():
    torch.manual_seed(0)
    layer = ActivationDropoutAndLinear(16, 16, activation="SwooshL", dropout_p=0.5, dropout_shared_dim=0,
                                       bias=False).train()
    with torch.no_grad():
        layer.weight.copy_(torch.eye(16))  # the output is the dropped-out activation itself
    x = torch.randn(30, 4, 16)
    mask = layer(x) / swoosh.swoosh_l(x)  # (T, N, C)
    torch.testing.assert_close(mask, mask[:1].expand_as(mask), rtol=1e-5, atol=1e-5)
    assert set(mask[0].round().unique().tolist()) == {0.0, 2.0}


# ---------------------------------------------------------------- Triton kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_triton_values_and_derivatives_equal_the_formula(triton_swoosh, kind, dtype):
    x = sample(3000, 3, dtype)
    value, deriv = reference(x, kind.name)
    y, none = triton_swoosh.swoosh(x.to(DEVICE), kind.offset, kind.constant, swoosh.SLOPE, triton_swoosh.MODE_VALUE)
    assert none is None
    assert_close_to_reference(y.cpu(), value, dtype)
    y, d = triton_swoosh.swoosh(x.to(DEVICE), kind.offset, kind.constant, swoosh.SLOPE,
                                triton_swoosh.MODE_VALUE_DERIV)
    assert_close_to_reference(y.cpu(), value, dtype)
    assert_close_to_reference(d.cpu(), deriv, dtype)


def test_triton_reads_and_writes_half_precision(triton_swoosh):
    x = sample(1000, 4).half()
    y, _ = triton_swoosh.swoosh(x.to(DEVICE), SWOOSH_L.offset, SWOOSH_L.constant, swoosh.SLOPE, 0)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.cpu().double(), reference(x, "SwooshL")[0], rtol=1e-3, atol=1e-3)  # fp16 output


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_triton_coded_backward_is_within_one_level_and_unbiased(triton_swoosh, kind):
    check_coded_backward(kind, DEVICE)


def test_triton_decodes_levels_like_the_definition(triton_swoosh):
    codes = torch.arange(256, dtype=torch.uint8).to(DEVICE)
    grad = torch.linspace(-2, 2, 256).to(DEVICE)
    out = triton_swoosh.dequantize_mul(grad, codes, swoosh.DERIV_MIN, DERIV_STEP)
    expected = grad.cpu().double() * (torch.arange(256, dtype=torch.float64) * DERIV_STEP - 0.08)
    torch.testing.assert_close(out.cpu().double(), expected, rtol=4e-7, atol=1e-7)


@pytest.mark.skipif(not ON_CUDA, reason="CUDA tensors go to the kernels on their own only on a GPU")
def test_cuda_tensors_use_the_kernels_without_the_flag():
    assert swoosh._kernels_for(torch.zeros(1, device="cuda")) is not None

"""The Zipformer's numeric building blocks against hand values and float64 formulas:
ScheduledFloat, BiasNorm, and the gradient-only constraints (forward unchanged; a few SGD
steps with random-sign gradients move the constrained statistic towards its limit, while the
same steps without the constraint do not)."""

import pytest
import torch

from asr_recipes.models.zipformer.constraints import (
    Balancer, ScaleGrad, Whiten, limit_param_value, penalize_abs_values_gt, whitening_metric,
)
from asr_recipes.models.zipformer.scaling import BiasNorm, SharedDropout, convert_num_channels, scaled_linear
from asr_recipes.models.zipformer.schedule import ScheduledFloat, set_batch_count


# ---------------------------------------------------------------- ScheduledFloat
def test_scheduled_float_is_piecewise_linear_in_the_batch_count():
    s = ScheduledFloat((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0), default=0.7)
    parent = torch.nn.Module()
    parent.rate = s  # reached through the module tree, as in the encoder
    assert float(s) == 0.7  # never told the batch count: default
    for batch, expected in [(-5, 0.2), (0, 0.2), (2000, 0.125), (4000, 0.05), (10000, 0.025), (16000, 0.0),
                            (10**6, 0.0)]:
        set_batch_count(parent, batch)
        assert float(s) == pytest.approx(expected, abs=1e-12), batch
    parent.eval()
    assert float(s) == 0.7  # eval mode: default


def test_scheduled_float_rejects_unordered_points():
    with pytest.raises(ValueError, match="increase"):
        ScheduledFloat((10.0, 1.0), (5.0, 0.0))


# ---------------------------------------------------------------- BiasNorm
def bias_norm_formula(x, bias, log_scale, channel_dim):
    b = bias.view([-1] + [1] * (x.ndim - 1 - channel_dim))
    return x * ((x - b) ** 2).mean(dim=channel_dim, keepdim=True) ** -0.5 * log_scale.exp()


@pytest.mark.parametrize("channel_dim,shape", [(-1, (5, 3, 8)), (1, (2, 8, 6))])
def test_bias_norm_values_and_gradients_equal_the_formula(channel_dim, shape):
    torch.manual_seed(0)
    norm = BiasNorm(8, channel_dim=channel_dim).double()
    with torch.no_grad():
        norm.bias.normal_()
        norm.log_scale.fill_(0.3)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out = norm(x)
    g = torch.randn_like(out)
    out.backward(g)
    x2 = x.detach().clone().requires_grad_()
    b2, s2 = norm.bias.detach().clone().requires_grad_(), norm.log_scale.detach().clone().requires_grad_()
    ref = bias_norm_formula(x2, b2, s2, channel_dim % x.ndim)
    ref.backward(g)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    for ours, theirs in ((x.grad, x2.grad), (norm.bias.grad, b2.grad), (norm.log_scale.grad, s2.grad)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_bias_norm_float32_matches_float64():
    torch.manual_seed(1)
    norm = BiasNorm(16).eval()
    x = torch.randn(40, 16) * 3 + 1
    ref = bias_norm_formula(x.double(), norm.bias.double(), norm.log_scale.double(), 1)
    # 16-term mean and a few products: a few ulp
    torch.testing.assert_close(norm(x).double(), ref, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- constraints
def sgd_with_random_gradients(x0, module, steps=60, lr=0.05, seed=0):
    """x <- x - lr * grad of sum(module(x) * noise), fresh standard-normal noise each step: a
    random walk, plus whatever the module's backward adds."""
    g = torch.Generator().manual_seed(seed)
    x = x0.clone().requires_grad_()
    for _ in range(steps):
        (module(x) * torch.randn(x.shape, generator=g)).sum().backward()
        with torch.no_grad():
            x -= lr * x.grad
            x.grad = None
    return x.detach()


def test_constraints_do_not_change_the_forward_and_eval_does_not_touch_gradients():
    x = torch.randn(50, 6, requires_grad=True)
    for module in (Balancer(6, -1, prob=1.0), Whiten(1, 1.0, prob=1.0, grad_scale=1.0), ScaleGrad(0.5)):
        module.train()
        assert torch.equal(module(x), x)
        module.eval()
        out = module(x)
        g = torch.randn_like(out)
        (grad,) = torch.autograd.grad(out, x, g)
        assert torch.equal(grad, g)


def test_balancer_pushes_the_positive_fraction_up_to_its_minimum():
    torch.manual_seed(0)
    x0 = torch.randn(2000, 4) * 0.5 - 1.0  # ~2% positive per channel
    balancer = Balancer(4, channel_dim=-1, min_positive=0.3, max_positive=1.0, min_abs=0.0, grad_scale=0.5,
                        prob=1.0).train()
    pushed = sgd_with_random_gradients(x0, balancer)
    free = sgd_with_random_gradients(x0, balancer.eval())
    before = (x0 > 0).float().mean(0)
    assert torch.all((pushed > 0).float().mean(0) > before + 0.1)
    assert torch.all(((free > 0).float().mean(0) - before).abs() < 0.05)


def test_balancer_pulls_the_magnitude_down_to_its_maximum():
    torch.manual_seed(0)
    x0 = torch.randn(10, 6, 200) * 10  # channels on axis 1, mean |x| ~ 8
    balancer = Balancer(6, channel_dim=1, min_positive=0.0, max_positive=1.0, min_abs=0.0, max_abs=2.0,
                        grad_scale=0.5, prob=1.0).train()
    pushed = sgd_with_random_gradients(x0, balancer, lr=0.2)
    free = sgd_with_random_gradients(x0, balancer.eval(), lr=0.2)
    mean_abs = lambda t: t.abs().mean(dim=(0, 2))  # noqa: E731
    assert torch.all(mean_abs(pushed) < 0.8 * mean_abs(x0))
    assert torch.all((mean_abs(free) / mean_abs(x0) - 1).abs() < 0.05)


def test_whitening_metric_is_one_for_white_data_and_large_for_rank_one():
    torch.manual_seed(0)
    assert whitening_metric(torch.randn(20000, 8), 1).item() == pytest.approx(1.0, abs=0.01)
    rank_one = torch.randn(500, 1) * torch.randn(1, 8)
    assert whitening_metric(rank_one, 1).item() == pytest.approx(8.0, rel=1e-4)  # C / num_groups


def test_whiten_lowers_the_whitening_metric_above_its_limit():
    torch.manual_seed(0)
    x0 = torch.randn(1000, 1) * torch.randn(1, 8) * 3 + torch.randn(1000, 8) * 0.5  # one dominant direction
    whiten = Whiten(num_groups=1, whitening_limit=2.0, prob=1.0, grad_scale=1.0).train()
    pushed = sgd_with_random_gradients(x0, whiten, steps=40, lr=0.05)
    free = sgd_with_random_gradients(x0, whiten.eval(), steps=40, lr=0.05)
    before = whitening_metric(x0, 1).item()  # ~7.6
    assert whitening_metric(pushed, 1).item() < 2.0 * 1.1  # down to about the limit
    assert whitening_metric(free, 1).item() > 0.95 * before


def test_penalize_abs_values_gt_adds_the_l1_gradient_beyond_the_limit():
    x = torch.tensor([-30.0, -10.0, 0.0, 20.0, 26.0], requires_grad=True)
    y = penalize_abs_values_gt(x, limit=25.0, penalty=1e-2)
    assert torch.equal(y, x)
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([0.99, 1.0, 1.0, 1.0, 1.01])


def test_limit_param_value_turns_gradients_that_push_further_out():
    x = torch.tensor([-2.0, 0.0, 2.0, -2.0, 2.0], requires_grad=True)
    y = limit_param_value(x, -1.0, 1.0, prob=1.0)
    (y * torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0])).sum().backward()
    # below the range with a positive gradient (descent lowers it) and above with a negative one: flipped
    assert x.grad.tolist() == [-1.0, 1.0, 1.0, -1.0, 1.0]


def test_scale_grad_scales_the_gradient_in_training():
    x = torch.ones(3, requires_grad=True)
    ScaleGrad(0.2).train()(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([0.2] * 3)


# ---------------------------------------------------------------- small helpers
def test_shared_dropout_draws_once_along_its_axis():
    torch.manual_seed(0)
    drop = SharedDropout(0.5, shared_dim=1).train()
    y = drop(torch.ones(4, 30, 8))  # (N, T, C): one draw per utterance and channel
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(torch.ones(2, 3, 4)), torch.ones(2, 3, 4))


def test_convert_num_channels_cuts_or_pads_with_zeros():
    x = torch.arange(6.0).view(1, 2, 3)
    assert convert_num_channels(x, 2).tolist() == [[[0.0, 1.0], [3.0, 4.0]]]
    assert convert_num_channels(x, 5).tolist() == [[[0.0, 1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 5.0, 0.0, 0.0]]]


def test_scaled_linear_starts_smaller():
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 64)
    torch.manual_seed(0)
    scaled = scaled_linear(64, 64, initial_scale=0.25)
    torch.testing.assert_close(scaled.weight, plain.weight * 0.25)
    assert scaled.bias.abs().max() <= 0.025


def test_attention_softmax_gradient_and_what_it_keeps():
    from asr_recipes.models.zipformer.attention import softmax

    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, 7, dtype=torch.float64)
    (ours,) = torch.autograd.grad(softmax(x, -1), x, g)
    (ref,) = torch.autograd.grad(x.softmax(-1), x, g)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.dtype) or t, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            softmax(torch.randn(4, 6, requires_grad=True), -1)
    assert kept == [torch.bfloat16]  # the output, in the autocast dtype

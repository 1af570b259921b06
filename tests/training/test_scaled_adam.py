"""ScaledAdam against a float64 hand computation of its equations, batched against one tensor at
a time, on a toy regression, and through a state_dict round trip (weights_only=True)."""

import io
import math

import pytest
import torch
from torch import nn

from asr_recipes.training.scaled_adam import ScaledAdam, ScaledAdamConfig

SETTINGS = ScaledAdamConfig(clipping_scale=2.0, scalar_lr_scale=0.1, param_min_rms=1e-5, param_max_rms=1.0,
                            scalar_max=10.0, size_update_period=2, clipping_update_period=2)
LR, BETAS, EPS = 0.05, (0.9, 0.98), 1e-8


def reference_run(weights, grads, cfg: ScaledAdamConfig = SETTINGS, lr=LR, betas=BETAS, eps=EPS):
    """ScaledAdam's equations written out in float64, one tensor and one step at a time.

    weights: initial tensors; grads: per step, one gradient per weight (a scalar: numel 1).
    Returns (final weights, clipping factor of every step, how often each bound of the scale
    step decided it: {"min_rms", "clamp", "max_rms"})."""
    b1, b2 = betas
    period, ring = cfg.size_update_period, cfg.clipping_update_period
    w = [x.double().clone() for x in weights]
    scalar = [x.numel() == 1 for x in w]
    v = [torch.zeros_like(x) for x in w]  # second moments
    m = [torch.zeros_like(x) for x in w]  # momentum
    rms = [float(x.square().mean().sqrt()) for x in w]  # measured at the first step
    scale_grads = [[] for _ in w]  # d loss / d log-scale at each step of the current period
    scale_v = [0.0 for _ in w]
    norms, threshold, factors = {}, None, []
    bounds = {"min_rms": 0, "clamp": 0, "max_rms": 0}
    for t, g in enumerate(grads):
        g = [x.double() for x in g]
        factor = 1.0
        if t > 0 and cfg.clipping_scale is not None:  # the norm as the update sees it: grad x RMS,
            # scalars grad x scalar_lr_scale
            sumsq = sum(float((gk * (cfg.scalar_lr_scale if s else r)).square().sum())
                        for gk, s, r in zip(g, scalar, rms))
            norms[t] = math.sqrt(sumsq)
            if t % ring == 0:  # the ring then holds steps t-ring+1 .. t
                recent = sorted(norms[s] for s in range(t - ring + 1, t + 1))
                threshold = cfg.clipping_scale * recent[min(len(recent) - 1, 2 * (len(recent) // 4))]
            elif t in (10, 20, 40) and t < ring:  # first estimates: all norms so far, twice the margin
                recent = sorted(norms[s] for s in range(1, t + 1))
                threshold = 2 * cfg.clipping_scale * recent[min(len(recent) - 1, 2 * (len(recent) // 4))]
            if threshold is not None:
                factor = min(1.0, threshold / norms[t])
        factors.append(factor)
        g = [factor * x for x in g]
        for k in range(len(w)):
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            correction = 1 - b2 ** (t + 1)
            v_hat = v[k] / correction if correction < 0.99 else v[k]
            direction = g[k] / (v_hat.sqrt() + eps)
            if scalar[k]:
                d = -lr * cfg.scalar_lr_scale * direction
            else:
                scale_grads[k].append(float((w[k] * g[k]).sum()))
                last_of_period = t % period == period - 1
                if last_of_period:
                    rms[k] = float(w[k].square().mean().sqrt())
                d = -lr * max(rms[k], cfg.param_min_rms) * direction
                if last_of_period and t > 0:
                    decay = b2**period
                    scale_v[k] = decay * scale_v[k] + (1 - decay) * sum(s * s for s in scale_grads[k]) / period
                    periods = (t + 1) // period
                    ds = (-lr * cfg.scalar_lr_scale * math.sqrt(1 - decay**periods) * sum(scale_grads[k])
                          / (math.sqrt(scale_v[k]) + eps))
                    if rms[k] < cfg.param_min_rms:
                        ds, bounds["min_rms"] = 0.0, bounds["min_rms"] + 1
                    if abs(ds) > 0.1:
                        ds, bounds["clamp"] = math.copysign(0.1, ds), bounds["clamp"] + 1
                    if ds > (cfg.param_max_rms - rms[k]) / rms[k]:
                        ds, bounds["max_rms"] = (cfg.param_max_rms - rms[k]) / rms[k], bounds["max_rms"] + 1
                    d = d + ds * w[k]
                if last_of_period:
                    scale_grads[k] = []
            m[k] = b1 * m[k] + (1 - b1) * d
            w[k] = w[k] + m[k]
            if scalar[k]:
                w[k] = w[k].clamp(-cfg.scalar_max, cfg.scalar_max)
    return w, factors, bounds


def run_optimizer(weights, grads, lr=LR, **kwargs):
    params = [nn.Parameter(x.clone()) for x in weights]
    opt = ScaledAdam(params, lr=lr, betas=BETAS, eps=EPS, settings=kwargs.pop("settings", SETTINGS), **kwargs)
    for g in grads:
        for p, gk in zip(params, g):
            p.grad = gk.clone()
        opt.step()
    return params, opt


def short_run():
    """A matrix, a vector whose RMS (0.98) is near param_max_rms (1.0) and a scalar; 5 steps with
    a gradient spike at t=2 (the first threshold, from t=1 and 2, clips it)."""
    weights = [0.3 * torch.randn(3, 4), 0.98 * torch.sign(torch.randn(5)), torch.tensor(0.7)]
    grads = [[torch.randn_like(x) * (10.0 if t == 2 else 1.0) for x in weights] for t in range(5)]
    return weights, grads, SETTINGS, LR


def large_scale_steps():
    """Scale steps beyond the +-0.1 clamp (lr 0.5, scalar_lr_scale 1); the vector's gradient
    points against it (it grows into param_max_rms); a tensor below param_min_rms; a spike at t=4."""
    settings = ScaledAdamConfig(clipping_scale=2.0, scalar_lr_scale=1.0, param_min_rms=1e-5, param_max_rms=1.0,
                                size_update_period=2, clipping_update_period=3)
    weights = [0.3 * torch.randn(3, 4), 0.9 * torch.sign(torch.randn(5)), 1e-6 * torch.randn(2, 3)]
    grads = [[g * (10.0 if t == 4 else 1.0) for g in (torch.randn(3, 4), -weights[1] + 0.1 * torch.randn(5),
                                                       1e-6 * torch.randn(2, 3))] for t in range(8)]
    return weights, grads, settings, 0.5


def long_run():
    """icefall's periods (4, 100) over 240 steps: the thresholds at 10, 20, 40, 100, 200 and the
    second-moment correction ending (at step 228 with beta2 0.98); spikes to clip."""
    settings = ScaledAdamConfig(param_max_rms=3.0)
    weights = [0.3 * torch.randn(3, 4), 0.5 * torch.randn(5), torch.tensor(0.7)]
    spikes = {15: 20.0, 64: 10.0, 150: 30.0, 230: 10.0}
    grads = [[torch.randn_like(x) * spikes.get(t, 1.0) for x in weights] for t in range(240)]
    return weights, grads, settings, LR


@pytest.mark.parametrize("case", [short_run, large_scale_steps, long_run])
def test_steps_match_the_equations_computed_by_hand(case):
    torch.manual_seed(0)
    weights, grads, settings, lr = case()
    expected, factors, bounds = reference_run(weights, grads, settings, lr=lr)
    assert any(f < 0.5 for f in factors)  # the spikes were clipped
    if case is large_scale_steps:
        assert min(bounds.values()) > 0, bounds
    params, opt = run_optimizer(weights, grads, lr=lr, settings=settings)
    for got, want in zip(params, expected):
        # float32 against float64 with gradients that do not depend on the weights (no feedback):
        # a few ulp per operation, accumulated over the steps; atol on the tensor's own scale
        torch.testing.assert_close(got.detach().double(), want, rtol=2e-6 * len(grads) ** 0.5,
                                   atol=1e-7 * float(want.abs().max()))
    assert opt.num_clipped() == sum(f < 1.0 for f in factors)
    assert all(not torch.equal(p.detach(), w) for p, w in zip(params, weights))


def test_scalars_are_clamped_to_scalar_max():
    settings = ScaledAdamConfig(scalar_max=0.5, clipping_scale=None)
    weights = [torch.tensor([0.49])]
    grads = [[torch.tensor([-1.0])] for _ in range(50)]  # pushes the scalar up
    params, _ = run_optimizer(weights, grads, settings=settings)
    expected, _, _ = reference_run(weights, grads, cfg=settings)
    assert params[0].item() == 0.5 and expected[0].item() == 0.5


def test_batched_by_shape_equals_one_tensor_at_a_time():
    torch.manual_seed(1)
    shapes = [(4, 3), (4, 3), (4, 3), (3,), (3,), (), (2, 2, 2)]
    weights = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) * (8.0 if t in (12, 17) else 1.0) for s in shapes] for t in range(30)]
    settings = ScaledAdamConfig(size_update_period=3, clipping_update_period=5)
    batched, opt_b = run_optimizer(weights, grads, settings=settings, batch_by_shape=True)
    single, opt_s = run_optimizer(weights, grads, settings=settings, batch_by_shape=False)
    assert opt_b.num_clipped() == opt_s.num_clipped() > 0
    for a, b in zip(batched, single):
        # the same per-tensor arithmetic; only reduction order inside stacked kernels may differ
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert len(opt_b.state) == 4 and len(opt_s.state) == len(shapes)  # one state per shape batch


def test_converges_on_a_toy_regression():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    x = torch.randn(512, 8)
    y = x @ torch.randn(8, 4)
    opt = ScaledAdam(model.parameters(), lr=0.03)  # a constant lr, no schedule
    first = None
    for _ in range(400):
        loss = ((model(x) - y) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first  # 4e-4 here; Adam(lr=3e-3) reaches 1e-2 in 400 steps


def plain_types(value, path="state_dict"):
    """Raises if anything in ``value`` is not a tensor, number, string, None or container of them."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{path}: key {k!r}"
            plain_types(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            plain_types(v, f"{path}[{i}]")
    else:
        assert value is None or isinstance(value, (torch.Tensor, bool, int, float, str)), f"{path}: {type(value)}"


def toy_steps(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()


def test_state_dict_round_trip_continues_identically_and_loads_weights_only():
    torch.manual_seed(0)
    settings = ScaledAdamConfig(size_update_period=4, clipping_update_period=8)

    def make():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
        return model, ScaledAdam(model.parameters(), lr=0.03, settings=settings)

    x, y = torch.randn(64, 5), torch.randn(64, 2)
    model, opt = make()
    toy_steps(model, opt, x, y, 14)  # past the first thresholds, mid size-update period
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    plain_types(opt.state_dict())
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model, resumed_opt = make()
    resumed_model.load_state_dict(saved["model"])
    resumed_opt.load_state_dict(saved["optimizer"])
    toy_steps(model, opt, x, y, 11)
    toy_steps(resumed_model, resumed_opt, x, y, 11)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)  # the same process and arithmetic: bit-identical continuation
    states = list(opt.state_dict()["state"].values())
    assert all(s["step"] == 25 for s in states) and sum("clip_threshold" in s for s in states) == 1


def test_rejects_bad_betas():
    with pytest.raises(ValueError, match="beta"):
        ScaledAdam([nn.Parameter(torch.zeros(2))], betas=(0.99, 0.9))


@pytest.mark.slow  # torch.compile: about a minute of compilation on a 2-core CPU
def test_compiled_elementwise_step_equals_eager():
    torch.manual_seed(2)
    shapes = [(4, 3), (4, 3), (7,), (), (2, 5, 3)]
    weights = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) * (8.0 if t == 12 else 1.0) for s in shapes] for t in range(16)]
    eager, _ = run_optimizer(weights, grads, settings=ScaledAdamConfig(size_update_period=3))
    compiled, opt = run_optimizer(weights, grads, settings=ScaledAdamConfig(size_update_period=3, compile=True))
    assert opt.num_clipped() >= 1
    for a, b in zip(compiled, eager):
        # fused float32 arithmetic (e.g. a / b computed as a * (1 / b)): a few ulp per step
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_non_contiguous_weight_is_updated():
    torch.manual_seed(0)
    base = torch.randn(5, 4)
    weight = nn.Parameter(base.clone().t())  # (4, 5), not contiguous
    assert not weight.is_contiguous()
    grads = [torch.randn(4, 5) for _ in range(6)]
    opt = ScaledAdam([weight], lr=0.05, settings=SETTINGS)
    for g in grads:
        weight.grad = g.clone()
        opt.step()
    expected, _, _ = reference_run([base.t()], [[g] for g in grads])
    torch.testing.assert_close(weight.detach().double(), expected[0], rtol=2e-6 * 6**0.5, atol=1e-7)

"""ScaledAdam + EdenScheduler replay icefall's own optimizer run (tests/fixtures/icefall/
optim_trajectory.pt, written by make_optim_fixture.py from icefall's zipformer/optim.py)."""

from pathlib import Path

import torch
from torch import nn

from asr_recipes.training import grad_clipping
from asr_recipes.training.scaled_adam import ScaledAdam, ScaledAdamConfig
from asr_recipes.training.schedules import EdenConfig, EdenScheduler
from tests.fixtures.icefall import make_optim_fixture as icefall_run

FIXTURE = Path(__file__).parents[1] / "fixtures/icefall/optim_trajectory.pt"


def test_weights_lrs_and_clipping_follow_icefalls_trajectory(monkeypatch):
    fx = torch.load(FIXTURE, weights_only=True)
    params = {name: nn.Parameter(t.clone()) for name, t in fx["init"].items()}
    groups = [{"params": [params[n] for n, _, g in icefall_run.TOY_SHAPES if g == i], "lr_scale": scale}
              for i, scale in enumerate(icefall_run.LR_SCALES)]
    cfg = icefall_run.SCALED_ADAM
    opt = ScaledAdam(groups, lr=cfg["lr"], betas=cfg["betas"],
                     settings=ScaledAdamConfig(clipping_scale=cfg["clipping_scale"],
                                               size_update_period=cfg["size_update_period"],
                                               clipping_update_period=cfg["clipping_update_period"]))
    scheduler = EdenScheduler(opt, EdenConfig(base_lr=cfg["lr"], **icefall_run.EDEN))
    factors = []

    def recording(group, batches):
        factors[-1].append(grad_clipping.clipping_factor(group, batches))
        return factors[-1][-1]

    monkeypatch.setattr("asr_recipes.training.scaled_adam.clipping_factor", recording)
    for step in range(icefall_run.STEPS):
        # icefall's train.py gives Eden the batch count including the current batch: one more than ours
        scheduler.step(step + 1, step // icefall_run.STEPS_PER_EPOCH)
        lrs = torch.tensor([g["lr"] for g in opt.param_groups], dtype=torch.float64)
        torch.testing.assert_close(lrs, fx["lrs"][step], rtol=1e-12, atol=0)
        loss = icefall_run.toy_loss(params, fx["x"], fx["target"], step)
        opt.zero_grad()
        loss.backward()
        factors.append([])
        opt.step()
        # The clipping factor: float32 norms, summed in a different order (a few ulp).
        torch.testing.assert_close(torch.tensor(factors[-1], dtype=torch.float64), fx["clipping_factors"][step],
                                   rtol=1e-5, atol=0)
        for name, p in params.items():
            # Weights of size ~1-2 after up to 60 updates, each rounded differently (reduction
            # order, operation order): a few float32 ulp (1.2e-7 at 1) per step at most.
            torch.testing.assert_close(p.detach(), fx["weights_after"][name][step], rtol=0, atol=1e-5,
                                       msg=lambda m: f"{name} after step {step}: {m}")
    clipped = (fx["clipping_factors"] < 1).sum().item()
    assert clipped >= 6 and opt.num_clipped() == clipped  # the spikes were clipped in both groups

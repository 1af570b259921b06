"""Schedules against their formulas; model averaging against explicit means."""

import pytest
import torch
from torch import nn

from asr_recipes.checkpoint.averaging import (
    average_between,
    average_state_dicts,
    init_running_average,
    update_running_average,
)
from asr_recipes.training.schedules import EdenConfig, EdenScheduler, LossScales, eden_factor


def test_eden_factor_formula_and_warmup():
    cfg = EdenConfig(base_lr=0.01, lr_batches=100, lr_epochs=2, warmup_batches=10, warmup_start=0.5)
    assert eden_factor(cfg, 0, 0) == pytest.approx(0.5)
    assert eden_factor(cfg, 5, 0) == pytest.approx(0.75 * ((25 + 1e4) / 1e4) ** -0.25)
    expected = ((300**2 + 100**2) / 100**2) ** -0.25 * ((3**2 + 4) / 4) ** -0.25
    assert eden_factor(cfg, 300, 3) == pytest.approx(expected)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = EdenScheduler(opt, cfg)
    assert sched.step(300, 3) == pytest.approx(0.01 * expected)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * expected)


def test_loss_scales_warm_up_linearly():
    scales = LossScales(simple_loss_scale=0.5, warm_step=100)
    assert scales.at(0) == (1.0, pytest.approx(0.1))
    assert scales.at(50) == (pytest.approx(0.75), pytest.approx(0.55))
    assert scales.at(100) == (0.5, 1.0) and scales.at(10_000) == (0.5, 1.0)


def test_running_average_is_the_mean_of_models_at_update_points():
    model = nn.Linear(3, 2)
    avg = init_running_average(model)
    history = [{k: v.clone().double() for k, v in model.state_dict().items()}]
    period = 2
    for step in range(1, 11):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        if step % period == 0:
            update_running_average(avg, model, period / step)
            history.append({k: v.clone().double() for k, v in model.state_dict().items()})
    # With period p the update weights p/n make avg the mean over the update points
    # (the initial model counting for the first period).
    for k in avg:
        ref = sum(h[k] for h in history[1:]) / (len(history) - 1)
        torch.testing.assert_close(avg[k], ref)


def test_average_between_two_running_averages_equals_mean_of_models_in_between():
    torch.manual_seed(0)
    models = [{"w": torch.randn(4, dtype=torch.float64)} for _ in range(12)]
    def running(n):  # mean of models 1..n
        return {"w": sum(m["w"] for m in models[1 : n + 1]) / n}
    first = {"model": models[4], "model_avg": running(4), "progress": {"average_count": 4}}
    last = {"model": models[10], "model_avg": running(10), "progress": {"average_count": 10}}
    out = average_between(first["model_avg"], 4, last["model_avg"], 10, dtype_like=last["model"])
    torch.testing.assert_close(out["w"], sum(m["w"] for m in models[5:11]) / 6)
    plain = average_state_dicts([first["model"], last["model"]])
    torch.testing.assert_close(plain["w"], (models[4]["w"] + models[10]["w"]) / 2)


def test_average_state_dicts_keeps_integer_buffers_from_the_last():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(7)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and out["n"].item() == 7
    with pytest.raises(ValueError):
        average_state_dicts([])

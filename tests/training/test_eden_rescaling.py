"""Eden with batch-duration rescaling and per-group lr scales, against its closed form; the
AdamW recipes' schedule is unchanged."""

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from asr_recipes.training.schedules import EdenConfig, EdenScheduler, adjusted_batch_count, eden_factor

CONF = Path(__file__).parents[2] / "conf/optim"


def closed_form(base_lr, batch, epoch, lr_batches, lr_epochs, warmup_batches, warmup_start):
    warm = warmup_start + (1 - warmup_start) * batch / warmup_batches if batch < warmup_batches else 1.0
    return (base_lr * warm * ((batch**2 + lr_batches**2) / lr_batches**2) ** -0.25
            * ((epoch**2 + lr_epochs**2) / lr_epochs**2) ** -0.25)


@pytest.mark.parametrize("step,epoch", [(0, 0), (7, 0), (250, 1), (1234, 2), (40_000, 9)])
def test_rescaled_eden_counts_batches_of_ref_duration(step, epoch):
    # icefall's numbers: batches of 1000 s on 4 GPUs against the 600 s reference
    cfg = EdenConfig(base_lr=0.045, lr_batches=7500, lr_epochs=3.5, warmup_batches=500, warmup_start=0.1,
                     ref_duration=600.0)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = EdenScheduler(opt, cfg, batch_seconds=1000.0 * 4)
    batch = step * 4000.0 / 600.0
    assert adjusted_batch_count(step, 4000.0, 600.0) == pytest.approx(batch)
    expected = closed_form(0.045, batch, epoch, 7500, 3.5, 500, 0.1)
    assert sched.step(step, epoch) == pytest.approx(expected, rel=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)


def test_without_ref_duration_the_step_is_the_batch_count():
    cfg = EdenConfig(base_lr=0.045, lr_batches=7500, lr_epochs=3.5, warmup_batches=500, warmup_start=0.1)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = EdenScheduler(opt, cfg, batch_seconds=4000.0)  # ignored without ref_duration
    for step, epoch in [(0, 0), (300, 0), (9000, 3)]:
        assert sched.step(step, epoch) == pytest.approx(closed_form(0.045, step, epoch, 7500, 3.5, 500, 0.1))


def test_the_adamw_recipes_schedule_is_unchanged():
    """conf/optim/adamw_eden.yaml: no ref_duration, the values of the closed form at raw steps."""
    optim = yaml.safe_load((CONF / "adamw_eden.yaml").read_text())
    assert "ref_duration" not in optim["schedule"]
    cfg = EdenConfig(base_lr=optim["lr"], **optim["schedule"])
    assert cfg.ref_duration is None
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = EdenScheduler(opt, cfg)  # no batch duration needed
    s = optim["schedule"]
    for step, epoch in [(0, 0), (499, 0), (500, 1), (20_000, 12)]:
        want = closed_form(optim["lr"], step, epoch, s["lr_batches"], s["lr_epochs"], s["warmup_batches"],
                           s["warmup_start"])
        assert sched.step(step, epoch) == pytest.approx(want, rel=1e-12)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12)
        assert optim["lr"] * eden_factor(cfg, step, epoch) == pytest.approx(want, rel=1e-12)


def test_each_group_gets_the_lr_times_its_lr_scale():
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr_scale": 0.5},
              {"params": [nn.Parameter(torch.zeros(1))]}]
    opt = torch.optim.SGD(groups, lr=1.0)
    sched = EdenScheduler(opt, EdenConfig(base_lr=0.01, lr_batches=100, lr_epochs=2, warmup_batches=0))
    lr = sched.step(50, 1)
    assert lr == pytest.approx(closed_form(0.01, 50, 1, 100, 2, 1, 1.0))
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.5 * lr), pytest.approx(lr)]


def test_ref_duration_needs_the_batch_duration():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="batch_seconds"):
        EdenScheduler(opt, EdenConfig(ref_duration=600.0))

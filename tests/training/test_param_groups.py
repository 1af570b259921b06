"""Per-module lr_scale attributes become optimizer param groups (icefall's convention)."""

import pytest
import torch
from torch import nn

from asr_recipes.training.param_groups import lr_scale_groups, lr_scale_of_weights


def nested_model() -> nn.Module:
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    model.add_module("decoder", nn.Linear(2, 3))
    model.add_module("frozen", nn.Linear(1, 1))
    model.frozen.requires_grad_(False)
    model.lr_scale = 2.0           # the whole model
    model.encoder.lr_scale = 0.5   # encoder: 2 x 0.5
    model.encoder[1].lr_scale = 0.2  # encoder.1: 2 x 0.5 x 0.2
    return model


def test_scales_of_nested_modules_multiply():
    scales = lr_scale_of_weights(nested_model())
    assert scales == {"encoder.0.weight": 1.0, "encoder.0.bias": 1.0,
                      "encoder.1.weight": pytest.approx(0.2), "encoder.1.bias": pytest.approx(0.2),
                      "decoder.weight": 2.0, "decoder.bias": 2.0, "frozen.weight": 2.0, "frozen.bias": 2.0}


def test_one_group_per_scale_without_frozen_weights():
    model = nested_model()
    groups = lr_scale_groups(model, lr=0.1)
    assert [g["lr_scale"] for g in groups] == [1.0, pytest.approx(0.2), 2.0]
    assert [g["lr"] for g in groups] == [pytest.approx(0.1), pytest.approx(0.02), pytest.approx(0.2)]
    assert groups[0]["params"] == [model.encoder[0].weight, model.encoder[0].bias]
    assert groups[1]["params"] == [model.encoder[1].weight, model.encoder[1].bias]
    assert groups[2]["params"] == [model.decoder.weight, model.decoder.bias]  # frozen left out


def test_without_lr_scale_attributes_there_is_one_group():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    groups = lr_scale_groups(model, lr=0.03)
    assert len(groups) == 1 and groups[0]["lr_scale"] == 1.0
    assert len(groups[0]["params"]) == 4 and torch.optim.SGD(groups).param_groups[0]["lr"] == 0.03

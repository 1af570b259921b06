"""optim=scaled_adam through the config and the training loop: icefall's settings, no double
clipping, exact resume, plain checkpoint state, the model's batch count."""

import io
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from asr_recipes.models.build import build_transducer
from asr_recipes import checkpoint as ckpt_io
from asr_recipes.training.scaled_adam import ScaledAdam, ScaledAdamConfig
from asr_recipes.training.trainer import OptimConfig, TrainerConfig, make_optimizer
from tests.training.test_scaled_adam import plain_types
from tests.training.test_trainer import MODEL, make_trainer

CONF = Path(__file__).parents[2] / "conf"


def train_config(*overrides) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["tokenizer_dir=x", "data.manifest_dir=x", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def test_optim_scaled_adam_has_icefalls_zipformer_settings():
    cfg = train_config("optim=scaled_adam", "experiment=librispeech")
    trainer = TrainerConfig.from_dict({**cfg["trainer"], "exp_dir": "exp", "loss": cfg["loss"], "optim": cfg["optim"]})
    o = trainer.optim
    # icefall zipformer/train.py: --base-lr 0.045 --lr-batches 7500 --lr-epochs 3.5 --ref-duration 600,
    # ScaledAdam(clipping_scale=2.0), Eden(warmup_start=0.1); optim.py's ScaledAdam defaults.
    assert (o.name, o.lr, o.betas, o.eps, o.grad_clip) == ("scaled_adam", 0.045, (0.9, 0.98), 1e-8, None)
    assert (o.schedule.lr_batches, o.schedule.lr_epochs, o.schedule.warmup_batches, o.schedule.warmup_start,
            o.schedule.ref_duration) == (7500, 3.5, 500, 0.1, None)
    assert o.scaled_adam == ScaledAdamConfig(clipping_scale=2.0, scalar_lr_scale=0.1, param_min_rms=1e-5,
                                             param_max_rms=3.0, scalar_max=10.0, size_update_period=4,
                                             clipping_update_period=100)
    assert trainer.ref_duration == 600
    model = build_transducer(MODEL, vocab_size=10)
    opt = make_optimizer(model, o)
    assert isinstance(opt, ScaledAdam) and len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 0.045
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    # the default stays AdamW (the bench tool passes the config section itself)
    default = train_config()
    assert TrainerConfig.from_dict({**default["trainer"], "exp_dir": "e", "loss": default["loss"],
                                    "optim": default["optim"]}).optim.name == "adamw"
    assert isinstance(make_optimizer(model, OmegaConf.create(default["optim"])), torch.optim.AdamW)


def test_scaled_adam_with_a_fixed_gradient_clip_is_an_error():
    with pytest.raises(ValueError, match="grad_clip must be null"):
        OptimConfig(name="scaled_adam", lr=0.045)  # grad_clip defaults to AdamW's 5.0
    with pytest.raises(ValueError, match="expected adamw or scaled_adam"):
        OptimConfig(name="sgd")


SCALED_ADAM = OptimConfig(name="scaled_adam", lr=0.045, grad_clip=None,
                          scaled_adam=ScaledAdamConfig(clipping_update_period=8))


def test_training_with_scaled_adam_resumes_exactly(tiny_corpus, tmp_path):
    steps_per_epoch = sum(1 for _ in make_trainer(tiny_corpus, tmp_path / "probe").data.train_dataloader(0))
    k = steps_per_epoch + 3  # the restart happens inside the second epoch, mid size-update period
    one_run = make_trainer(tiny_corpus, tmp_path / "a", optim=SCALED_ADAM, max_steps=2 * k)
    counts = []
    one_run.model.set_batch_count = counts.append  # what a Zipformer provides
    one_run.fit()
    # step x max_duration (12 s, tiny_data_config) x world_size 1 / ref_duration (600 s)
    assert counts == pytest.approx([step * 12.0 / 600.0 for step in range(2 * k)])
    assert isinstance(one_run.optimizer, ScaledAdam)
    make_trainer(tiny_corpus, tmp_path / "b", optim=SCALED_ADAM, max_steps=k).fit()
    second = make_trainer(tiny_corpus, tmp_path / "b", optim=SCALED_ADAM, max_steps=2 * k)
    second.fit()
    assert second.progress == one_run.progress  # the test clock included: a minute per step
    for (name, a), b in zip(one_run.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    # the checkpoint's optimizer and scheduler state are plain: they load with weights_only=True
    ckpt = ckpt_io.load_checkpoint(ckpt_io.step_checkpoints(tmp_path / "b")[-1])
    plain_types(ckpt["optimizer"])
    buffer = io.BytesIO()
    torch.save({"optimizer": ckpt["optimizer"], "scheduler": ckpt["scheduler"]}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {g["lr_scale"] for g in state["optimizer"]["param_groups"]} == {1.0}

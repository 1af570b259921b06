"""The Zipformer (conf/model/zipformer_tiny.yaml) in the training loop on the tiny synthesized
corpus, with ScaledAdam: it learns from the audio, the trainer's batch count reaches its
schedules, a causal Zipformer trains with chunks it takes, and training resumes exactly."""

from pathlib import Path

import pytest
import torch
import yaml

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from asr_recipes.models.zipformer import ScheduledFloat
from asr_recipes.training.objective import ChunkTrainingConfig, LossConfig
from asr_recipes.training.scaled_adam import ScaledAdamConfig
from asr_recipes.training.schedules import EdenConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config
from tests.training.test_trainer import CPU, StepClock, audio_free_loss_per_frame, full_loss_before_and_after_steps

ZIPFORMER = yaml.safe_load((Path(__file__).parents[2] / "conf/model/zipformer_tiny.yaml").read_text())
SCALED_ADAM = OptimConfig(name="scaled_adam", lr=0.045, grad_clip=None,
                          schedule=EdenConfig(warmup_batches=10, warmup_start=0.1, lr_batches=1000, lr_epochs=100),
                          scaled_adam=ScaledAdamConfig(clipping_update_period=8))


def make_trainer(corpus, exp_dir, data=None, model=None, **overrides):
    tokenizer = load_tokenizer(corpus.lang)
    seed_everything(0)
    model_config = {**ZIPFORMER, **(model or {})}
    transducer = build_transducer(model_config, tokenizer.vocab_size)
    cfg = dict(exp_dir=str(exp_dir), seed=0, num_epochs=3, save_every_n=4, keep_last_k=2, average_period=2,
               log_every_n=1, progress_bar=False, tensorboard=False, validate=False,
               loss=LossConfig(warm_step=4), optim=SCALED_ADAM)
    cfg.update(overrides)
    data_module = DataModule(tiny_data_config(corpus, **(data or {})), tokenizer, transducer.encoder.output_lengths)
    clock = StepClock()
    trainer = Trainer(TrainerConfig(**cfg), transducer, model_config, tokenizer, data_module, CPU, clock=clock)
    clock.attach(trainer)
    return trainer


def test_memorises_a_batch_beyond_what_the_label_prior_explains(tiny_corpus, tmp_path):
    """60 trainer steps on one batch drive the full loss (torchaudio's, -log P(y | x) over the
    whole lattice) below the best audio-free model's (tests/training/test_trainer.py): only a
    model that uses the audio gets there. Measured: 4.05 -> 0.87 nats per frame against a bound of
    1.32 (crossed after ~40 steps)."""
    trainer = make_trainer(tiny_corpus, tmp_path, dict(specaug={"enabled": False}))
    batch = next(iter(trainer.data.train_dataloader(0)))
    frames = trainer.model.encoder.output_lengths(batch["feature_lens"])  # (N,) Zipformer frames
    bound = audio_free_loss_per_frame(batch, frames)
    before, after = full_loss_before_and_after_steps(trainer, batch, frames, steps=60)
    assert before > 2 * bound
    assert after < bound, (before, after, bound)


def schedule_counts(model) -> set:
    return {m.batch_count for m in model.modules() if isinstance(m, ScheduledFloat)}


def test_causal_zipformer_resumes_mid_epoch_exactly(tiny_corpus, tmp_path):
    """Every random part on (SpecAugment, noise, dropout, layer skipping, balancers, chunk draws):
    a run stopped inside its second epoch and restarted ends with the same weights as one run.
    The schedules saw the trainer's batch count, and the encoder only chunks it takes."""
    data = dict(musan={"parts": list(tiny_corpus.noise_parts), "prob": 0.5, "snr": [5, 20]})
    chunks = ChunkTrainingConfig(chunk_sizes=[4, 8, -1], left_contexts=[8, -1])
    settings = dict(model={"causal": True}, chunk_training=chunks)
    steps_per_epoch = sum(1 for _ in make_trainer(tiny_corpus, tmp_path / "probe", data).data.train_dataloader(0))
    k = steps_per_epoch + 3  # inside the second epoch
    one_run = make_trainer(tiny_corpus, tmp_path / "a", data, max_steps=2 * k, **settings)
    seen = []
    one_run.model.encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((kwargs.get("chunk_size", 0), kwargs.get("left_context", -1))),
        with_kwargs=True)
    one_run.fit()
    # the last step's count: step x max_duration (12 s) x world size 1 / ref_duration (600 s)
    assert schedule_counts(one_run.model) == {(2 * k - 1) * 12.0 / 600.0}
    assert set(seen) <= {(0, -1), (4, 8), (4, -1), (8, 8), (8, -1)} and len({c for c, _ in seen}) == 3
    make_trainer(tiny_corpus, tmp_path / "b", data, max_steps=k, **settings).fit()
    second = make_trainer(tiny_corpus, tmp_path / "b", data, max_steps=2 * k, **settings)
    second.fit()
    assert second.progress == one_run.progress
    saved = ckpt_io.load_checkpoint(ckpt_io.step_checkpoints(tmp_path / "b")[-1])["model_training_state"]
    assert saved["whiten_probs"] and all(isinstance(p, float) for p in saved["whiten_probs"].values())
    for (name, a), b in zip(one_run.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    for name, a in one_run.model_avg.items():
        assert torch.equal(a, second.model_avg[name]), name


def test_a_mini_training_lowers_the_validation_loss(tiny_corpus, tmp_path):
    """12 epochs over the 24 training utterances: the validation loss per encoder frame (other
    utterances of the same voices) falls below 0.6 of the untrained model's. Measured: 4.17 ->
    1.78 nats per frame (0.43)."""
    trainer = make_trainer(tiny_corpus, tmp_path, num_epochs=12, loss=LossConfig(warm_step=20))
    before = trainer.validate()["loss"]
    trainer.fit()
    after = trainer.validate()["loss"]
    assert after < 0.6 * before, (before, after)

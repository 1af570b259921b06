"""The training loop on a tiny synthesized corpus: resume exactness, bad batches, checkpoints,
learning, and the time budget on a clock that the tests drive (each optimizer step takes exactly
one minute, nothing else takes time), so every timing assertion is exact on any machine."""

import math
import shutil
from collections import Counter

import pytest
import torch

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.constants import frames_after_subsampling  # the tiny Conformer's encoder frames
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer, tokenizer_from_dict
from asr_recipes.models.build import build_transducer
from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import LossConfig
from asr_recipes.training.schedules import EdenConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config

MODEL = dict(d_model=32, num_heads=2, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.1,
             subsampling_channels=8, conv_norm="batch", decoder_dim=32, context_size=2, joiner_dim=32)
CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


class StepClock:
    """The trainer's clock: time moves only when the optimizer steps, by ``step_seconds``
    (validation, checkpoints and data loading take none)."""

    def __init__(self, step_seconds: float = 60.0):
        self.now = 1000.0  # any origin: the trainer measures differences
        self.step_seconds = step_seconds

    def __call__(self) -> float:
        return self.now

    def attach(self, trainer: Trainer) -> None:
        def advance(*_):
            self.now += self.step_seconds

        trainer.optimizer.register_step_post_hook(advance)


def make_trainer(corpus, exp_dir, data=None, **overrides):
    tokenizer = load_tokenizer(corpus.lang)
    seed_everything(0)
    model = build_transducer(MODEL, tokenizer.vocab_size)
    cfg = dict(exp_dir=str(exp_dir), seed=0, num_epochs=3, save_every_n=4, keep_last_k=2, average_period=2,
               log_every_n=1, progress_bar=False, tensorboard=True,
               loss=LossConfig(warm_step=4), optim=OptimConfig(lr=0.003))
    cfg.update(overrides)
    data_module = DataModule(tiny_data_config(corpus, **(data or {})), tokenizer)
    clock = StepClock()
    trainer = Trainer(TrainerConfig(**cfg), model, MODEL, tokenizer, data_module, CPU, clock=clock)
    clock.attach(trainer)
    return trainer


def steps_per_epoch(corpus, tmp_path) -> int:
    return sum(1 for _ in make_trainer(corpus, tmp_path / "probe").data.train_dataloader(0))


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_mid_epoch_gives_the_same_parameters_as_one_run(tiny_corpus, tmp_path, workers):
    # Every random part of the pipeline on: SpecAugment (conf/data/default.yaml), generated noise.
    data = dict(num_workers=workers, musan={"parts": list(tiny_corpus.noise_parts), "prob": 0.5, "snr": [5, 20]})
    steps_per_epoch = sum(1 for _ in make_trainer(tiny_corpus, tmp_path / "probe", data).data.train_dataloader(0))
    assert steps_per_epoch >= 3
    k = steps_per_epoch + 1  # the restart happens inside the second epoch
    one_run = make_trainer(tiny_corpus, tmp_path / "a", data, max_steps=2 * k)
    one_run.fit()
    first = make_trainer(tiny_corpus, tmp_path / "b", data, max_steps=k)
    first.fit()
    assert first.progress["step"] == k and first.progress["batches_in_epoch"] == 1
    second = make_trainer(tiny_corpus, tmp_path / "b", data, max_steps=2 * k)
    second.fit()
    assert second.progress == one_run.progress  # the budget's clock included: a minute per step
    for (name, a), b in zip(one_run.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    for name, a in one_run.model_avg.items():
        assert torch.equal(a, second.model_avg[name]), name


def test_checkpoints_are_self_describing_and_pruned(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, num_epochs=2)
    trainer.fit()
    steps = [p.name for p in ckpt_io.step_checkpoints(tmp_path)]
    assert len(steps) == 2  # keep_last_k
    assert [p.name for p in ckpt_io.epoch_checkpoints(tmp_path)] == ["epoch-1.pt", "epoch-2.pt"]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = ckpt_io.load_checkpoint(tmp_path / "epoch-2.pt")
    # Rebuild model and tokenizer from the checkpoint alone.
    model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])
    model.load_state_dict(ckpt["model"])
    tok = tokenizer_from_dict(ckpt["tokenizer"])
    assert tok.encode(["CALL HOME"]) == trainer.tokenizer.encode(["CALL HOME"])
    model.eval()
    trainer.model.eval()
    x, x_lens = torch.randn(2, 100, 80), torch.tensor([100, 80])
    torch.testing.assert_close(model.encode(x, x_lens)[0], trainer.model.encode(x, x_lens)[0])
    assert ckpt["feature_config"]["num_mel_bins"] == 80
    assert ckpt["progress"]["epoch"] == 2 and ckpt["sampler"] is None


def audio_free_loss_per_frame(batch, frames=None) -> float:
    """The smallest full RNN-T loss per encoder frame (nats) that any model ignoring the audio and
    the label history can reach on ``batch``: one that emits blank with a fixed probability b and
    token k with (1 - b) q_k everywhere. Every path of a regular lattice through T frames and U
    labels has T blanks and U labels, and there are C(T + U - 1, U) of them (the last blank ends
    the utterance), so P(y) = C(T + U - 1, U) b^T (1 - b)^U prod_u q_{y_u}; its maximum over b and
    q is at the batch's own blank share b = sum T / (sum T + sum U) and token frequencies q.
    ``frames``: the model's encoder frames per utterance (N,), the tiny Conformer's if None."""
    frames = (frames_after_subsampling(batch["feature_lens"]) if frames is None else frames).tolist()
    lengths = batch["token_lens"].tolist()
    tokens = [t for row, n in zip(batch["tokens"].tolist(), lengths) for t in row[:n]]
    total_t, total_u = sum(frames), sum(lengths)
    b = total_t / (total_t + total_u)
    log_p = sum(math.lgamma(t + u) - math.lgamma(u + 1) - math.lgamma(t) + t * math.log(b) + u * math.log(1 - b)
                for t, u in zip(frames, lengths))
    log_p += sum(n * math.log(n / total_u) for n in Counter(tokens).values())
    return -log_p / total_t


def full_loss_before_and_after_steps(trainer, batch, frames, steps: int) -> tuple[float, float]:
    """The model's full loss on ``batch`` (torchaudio's, the exact -log P(y | x) summed over the
    whole lattice) per encoder frame, before and after ``steps`` trainer steps on that batch.
    Measured in eval mode (no dropout or SpecAugment), the steps in training mode.
    ``frames``: the model's encoder frames per utterance (N,)."""

    def full_loss_per_frame():
        trainer.model.eval()
        with torch.no_grad():
            loss = trainer.model.full_loss(batch["features"], batch["feature_lens"], batch["tokens"],
                                           batch["token_lens"], reduction="sum")
        trainer.model.train()
        return float(loss) / float(frames.sum())

    before = full_loss_per_frame()
    for _ in range(steps):
        trainer.train_step(batch)
    return before, full_loss_per_frame()


def test_training_memorises_a_batch_beyond_what_the_label_prior_explains(tiny_corpus, tmp_path):
    """Trainer steps on one batch must drive the model's full loss on it (torchaudio's, the exact
    -log P(y | x) summed over the whole lattice) below what the best audio-free model reaches:
    only a model that uses the audio gets there. The untrained model starts far above it."""
    trainer = make_trainer(tiny_corpus, tmp_path, dict(specaug={"enabled": False}),
                           optim=OptimConfig(lr=0.03, schedule=EdenConfig(warmup_batches=0)))
    batch = _batch(tiny_corpus, trainer)
    bound = audio_free_loss_per_frame(batch)
    before, after = full_loss_before_and_after_steps(trainer, batch, frames_after_subsampling(batch["feature_lens"]),
                                                     steps=30)
    assert before > 2 * bound
    assert after < bound, (before, after, bound)


def _batch(tiny_corpus, trainer):
    return next(iter(trainer.data.train_dataloader(0)))


def test_non_finite_utterances_are_dropped_and_counted(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path)
    batch = _batch(tiny_corpus, trainer)
    # An utterance without any alignment has an infinite loss. Real batches cannot produce one
    # any more (too-short cuts are filtered, and get_rnnt_prune_ranges widens windows that
    # cannot climb a transcript, as k2 does), so the encoder is made to report 0 frames for
    # utterance 0 (with labels): its lattice has no path, the others train normally.
    def no_frames_for_utterance_0(module, inputs, output):
        encoder_out, encoder_lens = output
        return encoder_out, encoder_lens.clone().index_fill_(0, torch.tensor([0]), 0)

    assert int(batch["token_lens"][0]) > 0
    trainer.model.encoder.register_forward_hook(no_frames_for_utterance_0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step(batch)
    assert trainer.monitor.counters["dropped_utterances"] == 1
    assert trainer.monitor.counters["skipped_steps"] == 0
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    for k in changed:
        assert torch.isfinite(trainer.model.state_dict()[k]).all(), k


def test_all_non_finite_batch_skips_the_step_without_touching_weights(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path)
    batch = _batch(tiny_corpus, trainer)
    batch["features"][:] = float("inf")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    opt_before = len(trainer.optimizer.state)
    trainer.train_step(batch)
    assert trainer.monitor.counters["skipped_steps"] == 1
    assert trainer.monitor.counters["dropped_utterances"] == len(batch["cut_ids"])
    for k, v in trainer.model.state_dict().items():
        if v.is_floating_point():  # BatchNorm running stats may move; weights must not
            if "running" not in k:
                assert torch.equal(v, before[k]), k
    assert len(trainer.optimizer.state) == opt_before


def test_full_loss_option_trains_on_the_same_batches(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, loss=LossConfig(type="full"), num_epochs=1)
    trainer.fit()
    valid = trainer.validate()
    assert set(valid) == {"loss", "full"} and math.isfinite(valid["loss"])


def test_budget_in_minutes_stops_and_a_rerun_does_nothing(tiny_corpus, tmp_path):
    n = steps_per_epoch(tiny_corpus, tmp_path)
    budget = n + 1.5  # minutes: steps of one minute each, so the step that ends at n + 2 minutes is the last
    trainer = make_trainer(tiny_corpus, tmp_path, max_minutes=budget)
    trainer.fit()
    assert trainer.progress["step"] == n + 2 and trainer.progress["train_seconds"] == 60 * (n + 2)
    assert trainer.progress["epoch"] == 1 and trainer.progress["batches_in_epoch"] == 2
    assert ckpt_io.load_latest(tmp_path)["progress"]["step"] == n + 2  # a checkpoint where it stopped
    again = make_trainer(tiny_corpus, tmp_path, max_minutes=budget)
    again.fit()
    assert again.progress == trainer.progress  # resumed over budget: no step


def test_whole_epochs_budget_does_not_start_an_epoch_that_would_not_fit(tiny_corpus, tmp_path):
    first = make_trainer(tiny_corpus, tmp_path / "a", num_epochs=1)
    first.fit()
    done = dict(first.progress)
    n = done["step"]
    assert done["epoch"] == 1 and done["batches_in_epoch"] == 0
    assert done["train_seconds"] == done["longest_epoch_seconds"] == 60 * n
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # two continuations of the same run
    # Budget: the epoch trained plus half an epoch. A hard stop cuts into epoch 2 at the first
    # step that reaches it ...
    budget = 1.5 * n
    hard = make_trainer(tiny_corpus, tmp_path / "b", num_epochs=3, max_minutes=budget)
    hard.fit()
    assert hard.progress["step"] == math.ceil(1.5 * n) and hard.progress["batches_in_epoch"] == math.ceil(0.5 * n)
    # ... while whole_epochs does not start it (epoch 1 took n minutes): no step, no new checkpoint.
    whole = make_trainer(tiny_corpus, tmp_path / "a", num_epochs=3, max_minutes=budget, whole_epochs=True)
    whole.fit()
    assert whole.progress == done
    assert [p.name for p in ckpt_io.epoch_checkpoints(tmp_path / "a")] == ["epoch-1.pt"]
    assert not ckpt_io.step_checkpoints(tmp_path / "a") or max(
        int(p.stem.split("-")[1]) for p in ckpt_io.step_checkpoints(tmp_path / "a")) <= done["step"]
    # A budget with room for one more epoch (predicted: as long as the longest) trains it, and
    # not a third.
    more = make_trainer(tiny_corpus, tmp_path / "a", num_epochs=3, max_minutes=2 * n + 0.5, whole_epochs=True)
    more.fit()
    assert (more.progress["epoch"], more.progress["step"], more.progress["train_seconds"]) == (2, 2 * n, 120 * n)


def test_unknown_config_keys_are_rejected():
    with pytest.raises(TypeError):
        TrainerConfig.from_dict({"exp_dir": "x", "num_epoch": 3})
    with pytest.raises(ValueError, match="loss.type"):
        LossConfig(type="ctc")


def test_minute_snapshots_are_written_and_resumable(tiny_corpus, tmp_path):
    # A step takes one minute of the trainer's clock: a snapshot after each of the first three.
    trainer = make_trainer(tiny_corpus, tmp_path, save_every_minutes=1, max_steps=3, save_every_n=0)
    trainer.fit()
    snapshots = {p.name: ckpt_io.load_checkpoint(p)["progress"]["step"] for p in tmp_path.glob("minutes-*.pt")}
    assert snapshots == {"minutes-1.pt": 1, "minutes-2.pt": 2, "minutes-3.pt": 3}
    # Every 2.5 minutes: after steps 3 (3 min) and 5; resuming continues the count.
    every = make_trainer(tiny_corpus, tmp_path / "b", save_every_minutes=2.5, max_steps=4, save_every_n=0)
    every.fit()
    assert sorted(p.name for p in (tmp_path / "b").glob("minutes-*.pt")) == ["minutes-2.5.pt"]
    resumed = make_trainer(tiny_corpus, tmp_path / "b", save_every_minutes=2.5, max_steps=6, save_every_n=0)
    resumed.fit()
    assert {p.name: ckpt_io.load_checkpoint(p)["progress"]["step"] for p in (tmp_path / "b").glob("minutes-*.pt")} == {
        "minutes-2.5.pt": 3, "minutes-5.pt": 5}
    # With the step checkpoint gone, resuming finds the newest snapshot.
    (tmp_path / "checkpoint-3.pt").unlink()
    newest = ckpt_io.load_latest(tmp_path)
    assert newest["path"] == str(tmp_path / "minutes-3.pt") and newest["progress"]["step"] == 3


def test_prune_coverage_is_measured_and_logged_at_validation(tiny_corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(tiny_corpus, tmp_path, num_epochs=1, save_every_n=0, prune_coverage_batches=1)
    trainer.fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    (logged,) = events.Scalars("valid/prune_coverage")
    assert logged.step == trainer.progress["step"] and 0.0 < logged.value < 1.0  # prune_range 5 of ~20 labels
    assert len(events.Scalars("valid/prune_gap_per_frame")) == 1
    # The first validation batch only (of every rank; one rank here), with the band of training.
    first = next(iter(trainer.data.valid_dataloader()))
    stats = trainer.prune_coverage()
    assert stats.utterances == len(first["cut_ids"]) and stats.batches == 1
    assert stats.coverage == pytest.approx(logged.value, abs=1e-6)  # the weights did not change since
    # A band wider than every transcript keeps the whole lattice; off means off.
    wide = make_trainer(tiny_corpus, tmp_path / "wide", loss=LossConfig(warm_step=4, prune_range=1000))
    wide_stats = wide.prune_coverage()
    assert wide_stats.coverage == pytest.approx(1.0, abs=1e-6) and abs(wide_stats.gap_per_frame) < 1e-4
    assert make_trainer(tiny_corpus, tmp_path / "off", prune_coverage_batches=0).prune_coverage() is None


def test_prune_coverage_does_not_change_training(tiny_corpus, tmp_path):
    with_it = make_trainer(tiny_corpus, tmp_path / "on", num_epochs=2, save_every_n=0, prune_coverage_batches=1)
    with_it.fit()
    without = make_trainer(tiny_corpus, tmp_path / "off", num_epochs=2, save_every_n=0, prune_coverage_batches=0)
    without.fit()
    for (name, a), b in zip(with_it.model.state_dict().items(), without.model.state_dict().values()):
        assert torch.equal(a, b), name

def test_loss_topology_is_checked_and_reaches_the_model(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="loss.rnnt_type"):
        LossConfig(rnnt_type="one-per-frame")
    regular = make_trainer(tiny_corpus, tmp_path / "r")
    modified = make_trainer(tiny_corpus, tmp_path / "m", loss=LossConfig(warm_step=4, rnnt_type="modified"))
    batch = _batch(tiny_corpus, regular)
    args = (batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"], 0)
    with torch.no_grad():
        regular.objective.eval()
        modified.objective.eval()
        _, parts_r = regular.objective(*args)
        _, parts_m = modified.objective(*args)
        # Same weights (same seed): only the lattice differs, as the model computes it directly.
        _, expected = modified.model(*args[:4], LatticeConfig(prune_range=5, lm_scale=0.25, rnnt_type="modified"),
                                     reduction="none")
    torch.testing.assert_close(parts_m["pruned"], expected)
    assert not torch.allclose(parts_r["pruned"], parts_m["pruned"])

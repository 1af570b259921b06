"""The training loop on a tiny synthesized corpus: resume exactness, bad batches, checkpoints."""

import math
import shutil

import pytest
import torch

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer, tokenizer_from_dict
from asr_recipes.models.build import build_transducer
from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import LossConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config

MODEL = dict(d_model=32, num_heads=2, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.1,
             subsampling_channels=8, conv_norm="batch", decoder_dim=32, context_size=2, joiner_dim=32)
CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


#: Progress entries that measure wall time (differ between any two runs).
TIMINGS = ("train_seconds", "epoch_start_seconds", "longest_epoch_seconds")


def make_trainer(corpus, exp_dir, data=None, **overrides):
    tokenizer = load_tokenizer(corpus.lang)
    seed_everything(0)
    model = build_transducer(MODEL, tokenizer.vocab_size)
    cfg = dict(exp_dir=str(exp_dir), seed=0, num_epochs=3, save_every_n=4, keep_last_k=2, average_period=2,
               log_every_n=1, progress_bar=False, tensorboard=True,
               loss=LossConfig(warm_step=4), optim=OptimConfig(lr=0.003))
    cfg.update(overrides)
    data_module = DataModule(tiny_data_config(corpus, **(data or {})), tokenizer)
    return Trainer(TrainerConfig(**cfg), model, MODEL, tokenizer, data_module, CPU)


def untimed(progress: dict) -> dict:
    return {k: v for k, v in progress.items() if k not in TIMINGS}


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
    assert untimed(second.progress) == untimed(one_run.progress)
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


def test_validation_loss_falls_while_training(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, num_epochs=1, save_every_n=0)
    before = trainer.validate()["loss"]
    trainer.fit()
    after = trainer.validate()["loss"]
    assert after < before


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
    trainer = make_trainer(tiny_corpus, tmp_path, max_minutes=1e-6)
    trainer.fit()
    assert trainer.progress["step"] == 1
    again = make_trainer(tiny_corpus, tmp_path, max_minutes=1e-6)
    again.fit()
    assert again.progress["step"] == 1


def test_whole_epochs_budget_does_not_start_an_epoch_that_would_not_fit(tiny_corpus, tmp_path):
    first = make_trainer(tiny_corpus, tmp_path / "a", num_epochs=1)
    first.fit()
    done = dict(first.progress)
    longest = done["longest_epoch_seconds"]
    assert done["epoch"] == 1 and done["batches_in_epoch"] == 0 and 0 < longest <= done["train_seconds"]
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # two continuations of the same run
    # Budget: what was trained plus a fifth of an epoch (not half: epoch 1 also pays the start-up,
    # and a faster epoch 2 once fit in half of it). A hard stop cuts into epoch 2 ...
    budget = (done["train_seconds"] + 0.2 * longest) / 60
    hard = make_trainer(tiny_corpus, tmp_path / "b", num_epochs=3, max_minutes=budget)
    hard.fit()
    assert hard.progress["step"] > done["step"] and hard.progress["batches_in_epoch"] > 0
    # ... while whole_epochs does not start it: no step, no new checkpoint.
    whole = make_trainer(tiny_corpus, tmp_path / "a", num_epochs=3, max_minutes=budget, whole_epochs=True)
    whole.fit()
    assert untimed(whole.progress) == untimed(done)
    assert [p.name for p in ckpt_io.epoch_checkpoints(tmp_path / "a")] == ["epoch-1.pt"]
    assert not ckpt_io.step_checkpoints(tmp_path / "a") or max(
        int(p.stem.split("-")[1]) for p in ckpt_io.step_checkpoints(tmp_path / "a")) <= done["step"]


def test_unknown_config_keys_are_rejected():
    with pytest.raises(TypeError):
        TrainerConfig.from_dict({"exp_dir": "x", "num_epoch": 3})
    with pytest.raises(ValueError, match="loss.type"):
        LossConfig(type="ctc")


def test_minute_snapshots_are_written_and_resumable(tiny_corpus, tmp_path):
    # Every step takes far longer than 6e-5 minutes, so each step crosses a period boundary.
    trainer = make_trainer(tiny_corpus, tmp_path, save_every_minutes=1e-4, max_steps=2, save_every_n=0)
    trainer.fit()
    snapshots = sorted(tmp_path.glob("minutes-*.pt"), key=lambda p: p.stat().st_mtime)
    assert [ckpt_io.load_checkpoint(p)["progress"]["step"] for p in snapshots] == [1, 2]
    # With the step checkpoint gone, resuming finds the newest snapshot.
    (tmp_path / "checkpoint-2.pt").unlink()
    newest = ckpt_io.load_latest(tmp_path)
    assert newest["path"] == str(snapshots[-1]) and newest["progress"]["step"] == 2


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

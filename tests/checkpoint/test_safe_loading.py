"""Opening a checkpoint runs no code: a pickle payload is refused by every command that reads
checkpoints, before it can run; what today's trainer writes loads everywhere; an earlier
version's checkpoint (numpy RNG state) is refused with the command that converts it."""

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.bin.transcribe import main as transcribe_main
from asr_recipes.bin.upgrade_checkpoint import main as upgrade_main
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.trainer import Trainer, TrainerConfig
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import MODEL, trained_exp

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


class Payload:
    """Unpickling this calls open(marker, "w"): it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def malicious(path, marker):
    """A file that looks like one of our checkpoints and carries the payload."""
    torch.save({"format": ckpt_io.FORMAT, "model_config": MODEL, "vocab_size": 30, "feature_dim": 80,
                "model": {"w": torch.zeros(2)}, "tokenizer": Payload(marker), "progress": {"step": 1}}, path)
    return path


def test_the_payload_runs_when_unpickled_unsafely(tmp_path):
    """The control: without weights_only the file does run code, so the tests below test something."""
    path, marker = malicious(tmp_path / "evil.pt", tmp_path / "ran"), tmp_path / "ran"
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, capture_output=True, timeout=120)
    assert marker.exists()


def test_load_checkpoint_refuses_the_payload_and_names_the_file(tmp_path):
    path, marker = malicious(tmp_path / "epoch-1.pt", tmp_path / "ran"), tmp_path / "ran"
    with pytest.raises(ckpt_io.UnsafeCheckpointError, match=f"checkpoint {path} holds objects other than .*"
                                                            "it was not loaded"):
        ckpt_io.load_checkpoint(path)
    with pytest.raises(ckpt_io.UnsafeCheckpointError):  # not skipped for an older file, not a fresh start
        ckpt_io.load_latest(tmp_path)
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_at_all_is_unreadable_not_unsafe(tmp_path):
    """Random bytes also fail the restricted unpickler; they are skipped when resuming (the older
    checkpoint is used) and reported as unreadable, without the upgrade advice."""
    ckpt_io.save_checkpoint(tmp_path / "epoch-1.pt", {"progress": {"step": 5}})
    (tmp_path / "checkpoint-9.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "latest.txt").write_text("checkpoint-9.pt\n")
    with pytest.raises(ckpt_io.CheckpointError, match="checkpoint-9.pt cannot be read") as err:
        ckpt_io.load_checkpoint(tmp_path / "checkpoint-9.pt")
    assert not isinstance(err.value, ckpt_io.UnsafeCheckpointError)
    assert ckpt_io.load_latest(tmp_path)["progress"]["step"] == 5


def test_transcribe_refuses_the_payload(tmp_path, capsys):
    path, marker = malicious(tmp_path / "evil.pt", tmp_path / "ran"), tmp_path / "ran"
    assert transcribe_main([str(path), str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"transcribe: checkpoint {path} holds objects other than") and err.count("\n") == 1
    assert not marker.exists()


def test_decode_refuses_the_payload(tmp_path):
    path, marker = malicious(tmp_path / "evil.pt", tmp_path / "ran"), tmp_path / "ran"
    with pytest.raises(AssertionError, match=f"exited with decode: checkpoint {path} holds objects"):
        run_entry("asr_recipes.bin.decode", f"exp_dir={tmp_path}", f"checkpoint={path}", "data.test_parts=[x]",
                  "device=cpu")
    assert not marker.exists()


def test_average_refuses_the_payload(tmp_path):
    marker = tmp_path / "ran"
    for epoch in (1, 2):
        malicious(tmp_path / f"epoch-{epoch}.pt", marker)
    with pytest.raises(AssertionError, match="exited with average: checkpoint .*epoch-2.pt holds objects"):
        run_entry("asr_recipes.bin.average", f"exp_dir={tmp_path}", "epoch=2", "avg=1")
    assert not marker.exists() and not list(tmp_path.glob("averaged-*"))


def test_export_refuses_the_payload(tmp_path):
    path, marker = malicious(tmp_path / "evil.pt", tmp_path / "ran"), tmp_path / "ran"
    with pytest.raises(AssertionError, match=f"exited with export: checkpoint {path} holds objects"):
        run_entry("asr_recipes.bin.export", f"checkpoint={path}", f"out_dir={tmp_path / 'onnx'}")
    assert not marker.exists() and not (tmp_path / "onnx").exists()


def test_training_does_not_resume_from_the_payload(tmp_path):
    from asr_recipes.models.build import build_transducer

    marker = tmp_path / "ran"
    malicious(tmp_path / "checkpoint-4.pt", marker)
    (tmp_path / "latest.txt").write_text("checkpoint-4.pt\n")
    cfg = TrainerConfig(exp_dir=str(tmp_path), tensorboard=False, progress_bar=False)
    trainer = Trainer(cfg, build_transducer(MODEL, 30), MODEL, tokenizer=None, data=None, dist_info=CPU)
    with pytest.raises(ckpt_io.UnsafeCheckpointError, match="checkpoint-4.pt holds objects"):
        trainer.fit()
    assert not marker.exists() and trainer.progress["step"] == 0


def test_what_the_trainer_writes_loads_everywhere(tiny_corpus, tmp_path_factory, tmp_path):
    """A real training run's checkpoints through every reader: resume, average, decode's choice,
    the model loader, the export plan."""
    from asr_recipes.export.compat import plan_export
    from asr_recipes.models.build import build_transducer

    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    for path in sorted(exp.glob("*.pt")):
        ckpt_io.check_plain(ckpt_io.load_checkpoint(path), path.name)
    latest = ckpt_io.load_latest(exp)
    assert latest["rng"]["numpy"]["key"].dtype == torch.int64
    trainer = Trainer(TrainerConfig(exp_dir=str(exp), tensorboard=False, progress_bar=False),
                      build_transducer(MODEL, latest["vocab_size"]), MODEL, None, None, CPU)
    assert trainer.resume() and trainer.progress["step"] == latest["progress"]["step"]
    path = ckpt_io.save_average(exp, epoch=3, avg=2)
    choice = ckpt_io.choose_checkpoint(exp, epoch=3, avg=2)
    assert choice.source == path.name
    model, tokenizer = ckpt_io.model_from_checkpoint(choice.checkpoint)
    assert tokenizer.vocab_size == latest["vocab_size"] and not model.training
    assert not plan_export(ckpt_io.load_checkpoint(path), str(path)).streaming


def old_version_checkpoint(path):
    """What the writer before safe loading wrote: numpy's RNG state as get_state() returns it."""
    np.random.seed(7)
    np.random.rand(3)  # a position inside the key, and a cached gaussian
    np.random.standard_normal()
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    torch.save({"format": ckpt_io.FORMAT, "model": {"w": torch.ones(2)}, "rng": rng, "progress": {"step": 3},
                "torch_version": torch.__version__}, path)
    return np.random.standard_normal(4), np.random.rand(4)


def test_an_old_checkpoint_is_refused_with_the_upgrade_command_and_upgrades(tmp_path, capsys):
    old = tmp_path / "checkpoint-3.pt"
    expected = old_version_checkpoint(old)
    with pytest.raises(ckpt_io.UnsafeCheckpointError,
                       match=f"{old} .*numpy.*python -m asr_recipes.bin.upgrade_checkpoint {old} NEW.pt"):
        ckpt_io.load_checkpoint(old)
    new = tmp_path / "upgraded" / "checkpoint-3.pt"
    assert upgrade_main([str(old), str(new)]) == 0
    err = capsys.readouterr().err
    assert f"TRUSTS {old}" in err and "weights_only=False" in err and f"wrote {new}" in err
    ckpt = ckpt_io.load_checkpoint(new)
    ckpt_io.check_plain(ckpt)
    assert ckpt["progress"] == {"step": 3} and torch.equal(ckpt["model"]["w"], torch.ones(2))
    assert type(ckpt["torch_version"]) is str
    np.random.seed(0)
    ckpt_io.set_rng_state(ckpt["rng"])  # the generators continue where the old run left them
    got = np.random.standard_normal(4), np.random.rand(4)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert not list(new.parent.glob(".*tmp*"))


def test_upgrade_says_it_trusts_the_file_and_refuses_foreign_files(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(1)}, foreign)
    assert upgrade_main([str(foreign), str(tmp_path / "new.pt")]) == 1
    err = capsys.readouterr().err
    assert f"upgrade_checkpoint TRUSTS {foreign}: it unpickles the file with torch.load(weights_only=False)" in err
    assert "is not an asr-recipes checkpoint" in err and not (tmp_path / "new.pt").exists()


def test_save_refuses_what_loading_would_refuse(tmp_path):
    with pytest.raises(TypeError, match=r"epoch-1.pt/rng/numpy\[1\] is a numpy.ndarray"):
        ckpt_io.save_checkpoint(tmp_path / "epoch-1.pt", {"rng": {"numpy": ("MT19937", np.zeros(3))}})
    assert not list(tmp_path.iterdir())

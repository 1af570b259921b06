"""Atomic checkpoint writes and resume discovery."""

import subprocess
import sys
import time

import pytest
import torch

from asr_recipes import checkpoint as ckpt_io


def test_save_load_and_latest(tmp_path):
    ckpt_io.save_checkpoint(tmp_path / "epoch-1.pt", {"progress": {"step": 5}, "model": {"w": torch.ones(2)}})
    ckpt_io.save_checkpoint(tmp_path / "checkpoint-8.pt", {"progress": {"step": 8}, "model": {"w": torch.zeros(2)}})
    assert (tmp_path / "latest.txt").read_text().strip() == "checkpoint-8.pt"
    latest = ckpt_io.load_latest(tmp_path)
    assert latest["progress"]["step"] == 8 and latest["path"].endswith("checkpoint-8.pt")
    assert not list(tmp_path.glob(".*tmp*"))


def test_unreadable_newest_checkpoint_falls_back_to_an_older_one(tmp_path):
    ckpt_io.save_checkpoint(tmp_path / "epoch-1.pt", {"progress": {"step": 5}})
    time.sleep(0.01)
    (tmp_path / "checkpoint-9.pt").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "latest.txt").write_text("checkpoint-9.pt\n")
    latest = ckpt_io.load_latest(tmp_path)
    assert latest["progress"]["step"] == 5
    with pytest.raises(ckpt_io.CheckpointError, match="checkpoint-9.pt cannot be read"):
        ckpt_io.load_checkpoint(tmp_path / "checkpoint-9.pt")
    torch.save({"not": "ours"}, tmp_path / "other.pt")
    with pytest.raises(ckpt_io.CheckpointError, match="not an asr-recipes checkpoint"):
        ckpt_io.load_checkpoint(tmp_path / "other.pt")


WRITER = """
import sys, torch
from asr_recipes.checkpoint import save_checkpoint
print("ready", flush=True)
save_checkpoint(sys.argv[1], {"progress": {"step": 99}, "model": {"big": torch.randn(100_000_000)}})
print("done", flush=True)
"""


def test_process_killed_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "epoch-1.pt"
    ckpt_io.save_checkpoint(target, {"progress": {"step": 1}, "model": {"w": torch.ones(3)}})
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 60
    while not list(tmp_path.glob(".epoch-1.pt.tmp-*")) and time.time() < deadline:
        time.sleep(0.005)
    proc.kill()  # SIGKILL mid-write: no cleanup handlers run
    proc.wait()
    assert proc.returncode != 0, "the writer finished before it could be killed; the test proves nothing"
    ckpt = ckpt_io.load_checkpoint(target)
    assert ckpt["progress"]["step"] == 1 and torch.equal(ckpt["model"]["w"], torch.ones(3))
    assert ckpt_io.load_latest(tmp_path)["progress"]["step"] == 1
    assert ckpt_io.resume_candidates(tmp_path) == [target]  # the temp file is never a candidate


def test_prune_step_checkpoints_keeps_the_newest(tmp_path):
    for step in (3, 12, 6, 9):
        ckpt_io.save_checkpoint(tmp_path / f"checkpoint-{step}.pt", {"progress": {"step": step}})
    ckpt_io.prune_step_checkpoints(tmp_path, 2)
    assert [p.name for p in ckpt_io.step_checkpoints(tmp_path)] == ["checkpoint-9.pt", "checkpoint-12.pt"]


def test_epoch_last_is_the_newest_epoch_and_caps_the_average(tmp_path):
    from asr_recipes.checkpoint import CheckpointError, resolve_epoch_avg

    with pytest.raises(CheckpointError, match="no epoch-"):
        resolve_epoch_avg(tmp_path, "last", 3)
    for name in ("epoch-1.pt", "epoch-2.pt", "epoch-10.pt", "checkpoint-900.pt", "minutes-15.pt"):
        (tmp_path / name).write_bytes(b"")  # only the names matter here
    assert resolve_epoch_avg(tmp_path, "last", 3) == (10, 3)  # 10, not 2: numbers, not strings
    (tmp_path / "epoch-10.pt").unlink()
    assert resolve_epoch_avg(tmp_path, "last", 3) == (2, 1)  # never reaches back to the untrained start
    (tmp_path / "epoch-2.pt").unlink()
    assert resolve_epoch_avg(tmp_path, "last", 3) == (1, 1)
    assert resolve_epoch_avg(tmp_path, 7, 3) == (7, 3)  # explicit values pass through

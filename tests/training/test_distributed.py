"""torchrun with 2 CPU processes (gloo), for real: sharding, replica sync, rank-0-only outputs,
resume on restart, and an elastic restart after a worker is killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr_recipes import checkpoint as ckpt_io

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]


def train_cmd(corpus, exp_dir, trace_dir, *extra, torchrun_args=()):
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *torchrun_args,
        "-m", "asr_recipes.bin.train", "model=tiny", "device=cpu",
        f"exp_dir={exp_dir}", f"tokenizer_dir={corpus.lang}", f"data.manifest_dir={corpus.fbank}",
        "data.valid_parts=[dev-clean]", "data.test_parts=[test-clean]", "data.num_workers=0",
        "data.max_duration=6", "trainer.progress_bar=false", "trainer.log_every_n=1",
        f"trainer.trace_dir={trace_dir}", *extra,
    ]


def run(cmd, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # timed out: stop torchrun and its workers
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return proc


def read_trace(trace_dir, rank):
    path = Path(trace_dir) / f"rank-{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_ranks_shard_data_stay_in_sync_and_only_rank_0_writes(tiny_corpus, tmp_path):
    exp, trace = tmp_path / "exp", tmp_path / "trace"
    run(train_cmd(tiny_corpus, exp, trace, "trainer.num_epochs=1", "trainer.save_every_n=2"))
    r0, r1 = read_trace(trace, 0), read_trace(trace, 1)
    assert len(r0) == len(r1) >= 3
    # disjoint batches: no cut is seen by both ranks in the epoch
    cuts0 = {c for rec in r0 for c in rec["cut_ids"]}
    cuts1 = {c for rec in r1 for c in rec["cut_ids"]}
    assert cuts0 and cuts1 and not cuts0 & cuts1
    # after every step the replicas hold identical parameters
    for a, b in zip(r0, r1):
        assert a["step"] == b["step"]
        assert a["param_checksum"] == b["param_checksum"], (a["step"], a["param_checksum"], b["param_checksum"])
    assert r0[0]["param_checksum"] != r0[-1]["param_checksum"]  # and they did train
    # only rank 0 wrote checkpoints, the log and TensorBoard events
    assert (exp / "epoch-1.pt").is_file() and ckpt_io.step_checkpoints(exp)
    assert [p.name for p in (exp / "log").iterdir()] == ["train.log"]
    assert len(list((exp / "tensorboard").glob("events.out.tfevents.*"))) == 1

    # Running the same command again resumes from the newest checkpoint.
    run(train_cmd(tiny_corpus, exp, trace, "trainer.num_epochs=2", "trainer.save_every_n=2"))
    log_text = (exp / "log" / "train.log").read_text()
    assert "resumed from" in log_text and "epoch-1.pt" in log_text
    after = read_trace(trace, 0)
    assert after[len(r0)]["step"] == r0[-1]["step"] + 1  # continues, does not restart at 0
    assert (exp / "epoch-2.pt").is_file()


def test_a_causal_zipformer_trains_on_two_ranks_with_scaled_adam(tiny_corpus, tmp_path):
    """The Zipformer skips modules at random, so some parameters get no gradient on some steps:
    DistributedDataParallel must be told (find_unused_parameters), or the second step fails."""
    exp, trace = tmp_path / "exp", tmp_path / "trace"
    cmd = train_cmd(tiny_corpus, exp, trace, "trainer.num_epochs=1", "optim=scaled_adam", "model.causal=true",
                    "trainer.chunk_training.chunk_sizes=[4,8,-1]", "trainer.chunk_training.left_contexts=[8,-1]")
    run([arg.replace("model=tiny", "model=zipformer_tiny") for arg in cmd])
    r0, r1 = read_trace(trace, 0), read_trace(trace, 1)
    assert len(r0) == len(r1) >= 3
    for a, b in zip(r0, r1):
        assert a["param_checksum"] == b["param_checksum"], a["step"]
    assert r0[0]["param_checksum"] != r0[-1]["param_checksum"]
    ckpt = ckpt_io.load_checkpoint(exp / "epoch-1.pt")
    assert ckpt["model_config"]["encoder"] == "zipformer" and ckpt["model_config"]["causal"] is True


def test_elastic_restart_after_a_worker_is_killed(tiny_corpus, tmp_path):
    exp, trace = tmp_path / "exp", tmp_path / "trace"
    cmd = train_cmd(tiny_corpus, exp, trace, "trainer.num_epochs=3", "trainer.save_every_n=2",
                    torchrun_args=("--max-restarts=1",))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Own process group: if the test fails, killing the group also stops torchrun's workers.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        # Wait until a step checkpoint exists and rank 1 is training past it, then kill rank 1.
        deadline = time.time() + 180
        victim = None
        while time.time() < deadline and proc.poll() is None:
            if ckpt_io.step_checkpoints(exp) and (trace / "rank-1.jsonl").is_file():
                records = read_trace(trace, 1)
                if records and records[-1]["step"] >= 3:
                    victim = records[-1]["pid"]
                    break
            time.sleep(0.2)
        assert victim is not None, "training did not get far enough to kill a worker"
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-4000:]
    records = read_trace(trace, 1)
    pids = [r["pid"] for r in records]
    assert len(set(pids)) == 2, "rank 1 was not restarted"
    restarted = [r for r in records if r["pid"] != victim]
    # The victim's trace ends with the last step it finished before the kill. It may have
    # joined one more step's gradient all-reduce and died before tracing it, while rank 0
    # finished that step and checkpointed it; so the restarted group resumes from a
    # checkpoint (not from step 0) at most one step past the victim's last traced step.
    last_traced = max(r["step"] for r in records if r["pid"] == victim)
    assert 1 < restarted[0]["step"] <= last_traced + 2
    log_text = (exp / "log" / "train.log").read_text()
    assert "resumed from" in log_text
    for path in ckpt_io.step_checkpoints(exp) + ckpt_io.epoch_checkpoints(exp):
        ckpt_io.load_checkpoint(path)  # none is corrupt
    assert (exp / "epoch-3.pt").is_file()
    assert not list(exp.glob(".*.tmp-*"))

"""The GPU check (make gpu-prepare / make gpu-check) in smoke mode on this CPU, and its pieces.

The end-to-end test builds a tiny bundle with the real entry point, runs local/gpu_check.sh
(the command the GPU machine runs) in smoke mode, and checks the report against the bundle and
the training runs' own files. The other tests hold each parser to the real producer of its
input (pytest, TrainMonitor, bench_loss) or to hand-computed values.
"""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lhotse import load_manifest

from asr_recipes.tools.gpu_check import bundle, kernels, loss_bench, training
from asr_recipes.tools.gpu_check.timebox import run_timed
from asr_recipes.tools.gpu_check.wheels import pinned, wheel_name_matches
from asr_recipes.training.monitor import TrainMonitor

REPO = Path(__file__).parents[2]
SMOKE_BUNDLE = ["bundle.task=commands", "bundle.train_sentences=32", "bundle.test_sentences=16", "bundle.concat=2",
                "bundle.vocab_size=40", "wheels=false", "num_jobs=1"]


def run(cmd, timeout=300, **env):
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    return out


def run_smoke_check(bundle_dir, tmp_path, *overrides):
    """bin.gpu_check in smoke mode on ``bundle_dir``; returns (process, report path)."""
    report_path = tmp_path / "report.md"
    out = run([sys.executable, "-m", "asr_recipes.bin.gpu_check", "mode=smoke", *overrides, f"bundle_dir={bundle_dir}",
               f"work_dir={tmp_path / 'w'}", f"report={report_path}"])
    return out, report_path


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_prepare")
    out = run([sys.executable, "-m", "asr_recipes.bin.gpu_prepare", f"out_dir={root / 'carry'}",
               f"scratch_dir={root / 'scratch'}", *SMOKE_BUNDLE])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return root / "carry" / "bundle"


def section(report: str, number: int) -> str:
    return report.split(f"\n## {number}. ")[1].split("\n## ")[0]


@pytest.mark.slow
def test_smoke_run_exercises_every_part(smoke_bundle, tmp_path):
    work, report_path = tmp_path / "work", tmp_path / "out" / "report.md"
    started = time.time()
    out = run(["bash", "local/gpu_check.sh", "mode=smoke", f"bundle_dir={smoke_bundle}", f"work_dir={work}",
               f"report={report_path}"], timeout=600, PYTHON=sys.executable)
    print(f"smoke run: {time.time() - started:.0f} s")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    report = report_path.read_text()
    assert report_path.with_suffix(".log").is_file()
    summary = report.split("## Summary")[1].split("\n## ")[0]
    for part in ("kernels", "bench", "train", "decode", "zipformer"):
        assert re.search(rf"^\| {part} \| ok", summary, re.MULTILINE), summary

    kernel_rows = [line for line in section(report, 1).splitlines() if re.match(r"\| \d", line)]
    passed, failed, error = map(int, kernel_rows[0].strip("| ").split(" | ")[:3])
    assert passed > 10 and failed == error == 0
    assert "tests/models/zipformer/test_swoosh.py" in section(report, 1)  # the Swoosh kernels are checked too

    bench = loss_bench.parse_bench(section(report, 2))
    assert len(bench.checks) == 2 and [r.shape for r in bench.rows] == ["B=2,T=20,S=5,C=30", "B=2,T=20,S=5,C=30,var"]
    assert "default" in bench.recursion

    train = section(report, 3)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in train.splitlines()
            if line.startswith(("| pruned", "| full"))}
    assert set(rows) == {"pruned", "full"}
    for loss, cells in rows.items():
        assert cells[2] == "gloo" and cells[3] == "4" and cells[11] == "yes", cells  # backend, steps, finite
        log = training.parse_train_log((work / f"train-{loss}" / "log" / "train.log").read_text())
        assert (log.backend, log.world_size, log.stopped_step) == ("gloo", 1, 4)
        trace = [json.loads(x) for x in (work / f"trace-{loss}" / "rank-0.jsonl").read_text().splitlines()]
        assert [r["step"] for r in trace] == [1, 2, 3, 4] and all(r["cut_ids"] for r in trace)
    pruned_ids = [json.loads(x)["cut_ids"] for x in (work / "trace-pruned" / "rank-0.jsonl").read_text().splitlines()]
    full_ids = [json.loads(x)["cut_ids"] for x in (work / "trace-full" / "rank-0.jsonl").read_text().splitlines()]
    assert pruned_ids == full_ids
    assert "identical." in train and "**full / pruned on the same batches** (steps 2-4" in train

    decode = section(report, 4)
    test_cuts = len(load_manifest(smoke_bundle / "librispeech_cuts_test-clean.jsonl.gz"))
    rows = [line.strip("| ").split(" | ") for line in decode.splitlines() if re.match(r"\| \d+ \| \w+_search", line)]
    assert [(r[0], r[1]) for r in rows] == [("1", "greedy_search"), ("1", "modified_beam_search"),
                                            ("8", "greedy_search"), ("8", "modified_beam_search")]
    for r in rows:  # batches of exactly the batch size; every test utterance decoded
        assert int(r[2]) == -(-test_cuts // int(r[0])) and int(r[3]) == test_cuts and r[-1] == "yes", r

    zipformer = section(report, 5)
    rows = [line.strip("| ").split(" | ") for line in zipformer.splitlines() if line.startswith("| bf16")]
    assert len(rows) == 1 and rows[0][3] == "3" and rows[0][-1] == "yes", rows  # steps, finite
    log = training.parse_train_log((work / "zipformer-bf16" / "log" / "train.log").read_text())
    assert log.stopped_step == 3 and log.params_m == float(rows[0][2])  # the Zipformer's parameter count
    steady = [w.audio_per_s for w in log.windows if w.prev_step >= 1]
    assert float(rows[0][5].replace(",", "")) == pytest.approx(sum(steady) / len(steady), abs=0.051)  # audio s/s, one decimal
    assert "model=zipformer_mini optim=scaled_adam" in zipformer and "trainer.amp=bf16" in zipformer


def test_an_expired_deadline_skips_parts_and_fails(smoke_bundle, tmp_path):
    out, report_path = run_smoke_check(smoke_bundle, tmp_path, "parts=[bench]", "smoke.deadline_minutes=0.01")
    assert out.returncode == 1, out.stderr[-2000:]
    report = report_path.read_text()
    assert "| bench | **FAILED** | skipped (deadline) |" in report and "**skipped**: no time left" in section(report, 2)


def test_an_error_in_one_part_is_reported_and_the_next_part_still_runs(smoke_bundle, tmp_path):
    out, report_path = run_smoke_check(smoke_bundle, tmp_path, "parts=[kernels,bench]", "smoke.kernels.paths=null")
    assert out.returncode == 1, out.stderr[-2000:]
    report = report_path.read_text()
    assert "**error** in the check itself" in section(report, 1) and "TypeError" in section(report, 1)
    assert re.search(r"^\| kernels \| \*\*FAILED\*\* \| error in the check", report, re.MULTILINE)
    assert re.search(r"^\| bench \| ok \|", report, re.MULTILINE)
    assert "TypeError" in report_path.with_suffix(".log").read_text()


def test_a_missing_bundle_is_one_clear_error(tmp_path):
    out, report_path = run_smoke_check(tmp_path / "none", tmp_path)
    assert out.returncode == 1
    assert "make gpu-prepare" in report_path.read_text()


def test_concatenated_utterances_hold_their_sentences_frames(tiny_corpus, tmp_path):
    cuts = list(load_manifest(tiny_corpus.fbank / "librispeech_cuts_test-clean.jsonl.gz"))
    groups = bundle.group_by_speaker(cuts, 2)
    speakers = {c.supervisions[0].speaker for c in cuts}
    assert len(groups) == sum(-(-sum(c.supervisions[0].speaker == s for c in cuts) // 2) for s in speakers)
    info = bundle._pack_part(cuts, 2, tmp_path, "test-clean")
    packed = {c.id: c for c in load_manifest(tmp_path / "librispeech_cuts_test-clean.jsonl.gz")
              .with_features_path_prefix(str(tmp_path))}
    assert info["utterances"] == len(groups) == len(packed) and info["sentences"] == len(cuts)
    for group in groups:
        cut = packed[group[0].id if len(group) == 1 else f"{group[0].id}-cat{len(group)}"]
        assert len({c.supervisions[0].speaker for c in group}) == 1
        expected = np.concatenate([c.load_features() for c in group])
        got = cut.load_features()
        assert got.shape == expected.shape and cut.num_frames == sum(c.num_frames for c in group)
        assert np.abs(got - expected).max() < 0.05  # lilcom re-quantisation only
        assert cut.supervisions[0].text == " ".join(c.supervisions[0].text for c in group)
        assert cut.duration == pytest.approx(cut.num_frames * 0.01)


def test_installed_bundle_lists_training_cuts_repeat_times_with_absolute_paths(tiny_corpus, tmp_path,
                                                                              monkeypatch):
    src = tmp_path / "bundle"
    packed = {}
    for part in ("train-clean-100", "test-clean"):
        cuts = list(load_manifest(tiny_corpus.fbank / f"librispeech_cuts_{part}.jsonl.gz"))[:6]
        packed[part] = bundle._pack_part(cuts, 3, src, part)["utterances"]
    (src / bundle.INFO_FILE).write_text(json.dumps({"format": bundle.FORMAT, "corpus": "librispeech",
                                                    "parts": {"train-clean-100": {}, "test-clean": {}}}))
    info = bundle.install_bundle(src, tmp_path / "data", repeat=3)
    assert info["lang_dir"] == str(src / "lang")
    train = load_manifest(tmp_path / "data" / "librispeech_cuts_train-clean-100.jsonl.gz")
    single = load_manifest(src / "librispeech_cuts_train-clean-100.jsonl.gz")
    assert len(train) == 3 * len(single) and len(set(train.ids)) == len(train)
    assert all(Path(c.features.storage_path).is_absolute() for c in train)
    assert len(single) == packed["train-clean-100"]
    monkeypatch.chdir(tmp_path / "data")  # the features load whatever the working directory
    assert train[0].load_features().shape[0] == train[0].num_frames
    assert len(load_manifest(tmp_path / "data" / "librispeech_cuts_test-clean.jsonl.gz")) == packed["test-clean"]
    with pytest.raises(bundle.BundleError, match="make gpu-prepare"):
        bundle.install_bundle(tmp_path / "nothing", tmp_path / "data2")


def test_train_log_parser_reads_the_monitors_lines(tmp_path, caplog):
    monitor = TrainMonitor(tmp_path, is_main=True, tensorboard=False, progress_bar=False)
    with caplog.at_level(logging.INFO, logger="asr_recipes.training.monitor"):
        for step in (1, 2, 3, 4):  # windows of two steps: frames 100 + 100, losses 50 + 30
            monitor.train_step(step, lr=1e-3, grad_norm=2.5, loss_sum=50.0 if step % 2 else 30.0,
                               parts={"simple": 80.0, "pruned": 40.0}, frames=100.0, utts=3, log_every_n=2,
                               audio_seconds=12.0)
            time.sleep(0.05)
        monitor.count("skipped_steps", 2)
    log = training.parse_train_log(caplog.text)
    assert [(w.prev_step, w.step) for w in log.windows] == [(0, 2), (2, 4)]
    w = log.windows[0]
    assert w.losses == {"loss": 0.4, "simple": 0.8, "pruned": 0.4} and w.peak_gib is None
    # 6 utterances and 24 s of audio in the window's two steps, whatever the wall time was
    window_s = w.ms_per_step * 2 / 1e3
    assert w.utt_per_s * window_s == pytest.approx(6, rel=0.05)
    assert w.audio_per_s * window_s == pytest.approx(24, rel=0.05)
    assert log.counters == {"skipped_steps": 2}
    s = training.summarize(log, skip_steps=2)
    assert [x.step for x in s.steady] == [4] and s.finite and s.falling is False  # 0.4 -> 0.4


def test_comparison_uses_the_steady_windows_both_runs_logged():
    def log(ms, peak, prescan):
        return training.TrainLog(windows=[training.Window(s - 10, s, {"loss": 1.0}, 1.0, 1.0, m, p)
                                          for s, m, p in zip((10, 20, 30, 40), ms, peak)], prescan_peak_gib=prescan)

    pruned = log([900, 100, 100, 100], [1, 2, 2, 2], 3.0)
    full = log([950, 300, 500], [4, 8, 9], 12.0)  # stopped after step 30
    c = training.compare(pruned, full, skip_steps=10)
    assert (c.first_step, c.last_step) == (11, 30)
    assert c.step_time_ratio == pytest.approx(400 / 100)
    assert c.peak_ratio == pytest.approx(9 / 2) and c.prescan_peak_ratio == pytest.approx(4.0)
    assert training.compare(pruned, log([1], [1], None), skip_steps=10) is None


def test_training_minutes_shrink_only_when_the_deadline_needs_it():
    # 320 s left, 90 s for decoding, 2 runs of 50 s expected start-up each: 1 minute fits
    assert training.run_minutes(1.0, 320, 90, 2, startup_s=100) == 1.0
    # 240 s left: each run gets (240 - 90) / 2 = 75 s, minus 50 s start-up
    assert training.run_minutes(1.0, 240, 90, 2, startup_s=100) == pytest.approx(25 / 60, abs=0.005)
    assert training.run_minutes(1.0, 100, 90, 2, startup_s=100) == 0.25  # the floor; the time box does the rest
    assert training.run_minutes(0.2, 1000, 0, 1, startup_s=100) == 0.2  # never more than configured


def test_pytest_outcomes_are_counted_from_a_real_run(tmp_path):
    (tmp_path / "test_mix.py").write_text(
        "import pytest\n"
        "def test_a(): pass\n"
        "@pytest.mark.parametrize('x', [1, 2, 3])\n"
        "def test_b(x): assert x != 2, 'two is out'\n"
        "def test_c(): pytest.skip('no')\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError('fixture')\n"
        "def test_d(broken): pass\n")
    out = subprocess.run(kernels.pytest_command(sys.executable, [str(tmp_path / "test_mix.py")]), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    counts = kernels.parse_pytest(out.stdout)
    assert dict(counts.counts) == {"PASSED": 3, "FAILED": 1, "SKIPPED": 1, "ERROR": 1}
    assert not counts.ok
    assert [reason for test, reason in counts.problems.items() if test.endswith("::test_b[2]")] == [
        "AssertionError: two is out"]
    assert any(test.endswith("::test_d") and "fixture" in reason for test, reason in counts.problems.items())


def test_bench_rows_parse_back_and_targets_report_the_shortfall():
    from asr_recipes.tools.bench.loss import Shape, bench_shapes
    import torch

    printed = bench_shapes([Shape(B=2, T=12, S=4, C=20, J=8)], torch.device("cpu"), [False], 0, 1, False)
    row = loss_bench.parse_bench("\n".join(printed)).rows[0]
    cells = printed[-1].strip("| ").split(" | ")
    assert (row.shape, row.precision) == ("B=2,T=12,S=4,C=20", "fp32")
    assert (row.full_ms, row.pruned_ms, row.speedup) == tuple(float(c.rstrip("x")) for c in cells[2:5])
    assert row.full_mb is None and row.memory_ratio is None  # no peak memory on a CPU

    out = loss_bench.parse_bench("\n".join([
        "| B=32,T=500,S=100,C=500 | fp32 | 3,000.0 | 100.0 | 30.0x | 20,000 | 4,000 | 5.0x |",
        "| B=32,T=150,S=30,C=5000 | fp16 autocast | 50.0 | 10.0 | 5.0x | - | - | - |",
        "recursion alone (regular, fwd + occupations + bwd), B=32,T=500,S=100, warps default: 1.400 ms",
        "recursion alone (regular, fwd + occupations + bwd), B=32,T=500,S=100, warps 2: 0.500 ms"]))
    verdicts = {t: v for t, _, v in loss_bench.target_rows(out)}
    assert verdicts["B=32,T=500,S=100,C=500 fp32: speed-up >= 15x"] == "met"
    assert verdicts["B=32,T=500,S=100,C=500 fp32: memory ratio >= 10x"] == "**missed** by 2.00x"
    assert verdicts["B=32,T=150,S=30,C=5000 fp16 autocast: speed-up >= 10x"] == "**missed** by 2.00x"
    assert verdicts["B=32,T=150,S=30,C=5000 fp32: speed-up >= 15x"] == "not measured"
    assert verdicts["recursion alone (default warps) <= 0.7 ms"] == "**missed** by 2.00x"
    assert verdicts["recursion alone (best warps) <= 0.7 ms"] == "met"


def _running(pid: int) -> bool:
    """Alive and not a zombie (Linux /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_timebox_stops_the_whole_process_group(tmp_path):
    done = run_timed(["bash", "-c", "sleep 60 & echo child $!; wait"], 2, tmp_path / "log", echo=False)
    assert done.timed_out and done.status().startswith("timed out") and done.seconds < 20
    child = int(re.search(r"child (\d+)", done.output).group(1))
    deadline = time.time() + 5  # SIGKILL is asynchronous; a killed orphan may linger as a zombie
    while _running(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(child)
    assert "[timed out" in (tmp_path / "log").read_text()
    ok = run_timed([sys.executable, "-c", "print('hi'); raise SystemExit(3)"], 30, tmp_path / "log", echo=False)
    assert (ok.returncode, ok.output, ok.status()) == (3, "hi\n", "failed (exit 3)")


def test_wheel_names_and_pins():
    assert wheel_name_matches("hydra_core-1.3.8-py3-none-any.whl", "hydra-core")
    assert wheel_name_matches("antlr4_python3_runtime-4.9.3-py3-none-any.whl", "antlr4-python3-runtime")
    assert not wheel_name_matches("lhotse-1.33.0-py3-none-any.whl", "lilcom")
    assert pinned(["pytest"]) == [f"pytest=={pytest.__version__}"]
    with pytest.raises(RuntimeError, match="make install"):
        pinned(["no-such-package-here"])

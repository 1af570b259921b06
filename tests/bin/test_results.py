"""bin.results: the run's table holds the error rates, counts and speeds of the decode stage's
files, computed here by hand, and goes to <exp_dir>/RESULTS.md unless told otherwise."""

import re

import pytest

from asr_recipes.decoding.report import write_results
from asr_recipes.decoding.runner import SpeedReport, write_part_results
from tests.decoding.entry import run_entry

MACHINE = {"device": "cpu", "device_name": "x86_64", "cpu_count": 2, "platform": "Linux-test", "torch": "2.x"}
MODEL = {"num_parameters": 1_234_567, "train_seconds": 7200.0, "epoch": 10, "step": 1200}


def fake_decode(exp, method, part, key, results, unit, audio_seconds, wall_seconds):
    """What bin.decode leaves for one (method, part): scoring files and the speed json."""
    speed = SpeedReport(method, part, key, num_utterances=len(results), audio_seconds=audio_seconds,
                        shared_seconds=wall_seconds / 2, search_seconds=wall_seconds / 2)
    write_part_results(exp, results, speed, unit, {"weights": "epoch-10-avg-3", "checkpoint": "exp/avg.pt",
                                                   "machine": MACHINE, "model": MODEL})


def test_results_table_is_the_runs_own_dated_section(tmp_path, capsys):
    exp = tmp_path / "exp"
    # 1 substitution + 1 deletion over 6 words = 33.33 % WER
    words = [("u1", "A B C D".split(), "A X C D".split()), ("u2", ["E", "F"], ["E"])]
    fake_decode(exp, "greedy_search", "test-clean", "epoch-10-avg-3-max-sym-per-frame-1", words, "word", 10.0, 2.0)
    # 1 insertion over 4 characters = 25.00 % CER
    chars = [("c1", list("今天很好"), list("今天很很好"))]
    fake_decode(exp, "modified_beam_search", "test", "epoch-10-avg-3-beam-4-max-sym-per-frame-1", chars, "char",
                4.0, 0.5)
    run_entry("asr_recipes.bin.results", f"exp_dir={exp}", "title=tiny run")  # default: <exp_dir>/RESULTS.md
    printed = capsys.readouterr().out
    md = exp / "RESULTS.md"
    assert md.read_text() == printed
    assert re.match(r"^## tiny run \(\d{4}-\d\d-\d\d \d\d:\d\d\)$", printed.splitlines()[0])
    lines = printed.splitlines()
    header = lines.index("| test set | method | key | metric | rate (%) | errors / ref | RTF | utt/s |")
    assert lines[header + 2 :] == [
        "| test | modified_beam_search | epoch-10-avg-3-beam-4-max-sym-per-frame-1 | CER | 25.00 | 1 / 4 | 0.1250 "
        "| 2.0 |",
        "| test-clean | greedy_search | epoch-10-avg-3-max-sym-per-frame-1 | WER | 33.33 | 2 / 6 | 0.2000 | 1.0 |",
    ]
    assert "- exp_dir: `exp (this file's directory)`" in printed
    assert "1.23 M parameters, trained 2.00 h (epoch 10, step 1200)" in printed
    assert "x86_64 (cpu), 2 CPUs, Linux-test, torch 2.x" in printed
    # a second run replaces the table (one run, one table), and names no path of this machine
    run_entry("asr_recipes.bin.results", f"exp_dir={exp}", "title=again")
    assert md.read_text().count("## ") == 1 and md.read_text().startswith("## again (")
    assert str(tmp_path) not in md.read_text()
    # elsewhere on request, the exp dir named relative to that file
    other = tmp_path / "reports" / "run.md"
    run_entry("asr_recipes.bin.results", f"exp_dir={exp}", f"results_md={other}", "title=x")
    assert "- exp_dir: `../exp`" in other.read_text()
    assert [p.name for p in exp.glob(".*")] == []  # no temp files left


def test_results_without_decoding_outputs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the decode stage first"):
        write_results(tmp_path, tmp_path / "RESULTS.md")
    assert not (tmp_path / "RESULTS.md").exists()


def test_snapshot_keys_sort_by_their_numbers():
    from asr_recipes.decoding.report import natural_sort_key

    keys = ["minutes-15", "minutes-5", "minutes-10", "epoch-12-avg-4", "epoch-9-avg-4"]
    assert sorted(keys, key=natural_sort_key) == ["epoch-9-avg-4", "epoch-12-avg-4", "minutes-5", "minutes-10",
                                                  "minutes-15"]

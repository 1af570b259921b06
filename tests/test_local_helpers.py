"""local/*.sh: real bash scripts that source the helpers, the way egs/<corpus>/run.sh does."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "local"

RECIPE = """#!/usr/bin/env bash
set -euo pipefail
. "{local}/common.sh"
stage=0          # first stage to run
stop_stage=100   # last stage to run
vocab_size=500   # BPE vocabulary size
tag=""
. "$ASR_RECIPES_ROOT/local/parse_options.sh"
echo "stage=$stage stop_stage=$stop_stage vocab_size=$vocab_size tag=[$tag] rest=[$*]"
for n in 0 1 2 3 4; do
  if stage_enabled "$n"; then echo "enabled $n"; fi
done
if should_run 2 exp; then
  echo ran >> exp_count
  [ -z "${{FAIL:-}}" ] || die "stage 2 failed on purpose"
  mark_done exp 2
fi
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "run.sh"
    path.write_text(RECIPE.format(local=LOCAL))

    def run(*args, env=None):
        return subprocess.run(["bash", str(path), *args], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=30)
    return run


def parsed(result):
    line = next(line for line in result.stdout.splitlines() if line.startswith("stage="))
    return line


def enabled(result):
    return [int(m) for m in re.findall(r"^enabled (\d+)$", result.stdout, re.MULTILINE)]


def test_bash_syntax_of_every_helper():
    scripts = sorted(LOCAL.glob("*.sh"))
    assert {p.name for p in scripts} >= {"common.sh", "parse_options.sh"}
    for script in scripts:
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, f"{script}: {check.stderr}"


def test_options_set_defined_variables(recipe):
    r = recipe("--stage", "3", "--stop-stage=4", "--vocab-size", "250", "--tag", "a b")
    assert r.returncode == 0, r.stderr
    assert parsed(r) == "stage=3 stop_stage=4 vocab_size=250 tag=[a b] rest=[]"
    r = recipe("--stage", "1", "--", "--not-an-option", "x")
    assert parsed(r) == "stage=1 stop_stage=100 vocab_size=500 tag=[] rest=[--not-an-option x]"
    assert parsed(recipe("--tag=x=y", "pos")).endswith("tag=[x=y] rest=[pos]")


@pytest.mark.parametrize("args,message", [
    (["--vocab-szie", "250"], "unknown option --vocab-szie"),
    (["--ASR-RECIPES-ROOT", "/x"], "unknown option"),
    (["--_po-var", "x"], "unknown option"),
    (["--stage"], "option --stage needs a value"),
])
def test_bad_options_are_errors(recipe, args, message):
    r = recipe(*args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "stage=" not in r.stdout  # nothing ran


def test_help_lists_options_with_defaults_and_comments(recipe):
    r = recipe("--vocab-size", "100", "--help")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert re.search(r"^\s+--stage 0\s+first stage to run$", r.stdout, re.MULTILINE)
    assert re.search(r"^\s+--stop-stage 100\s+last stage to run$", r.stdout, re.MULTILINE)
    assert re.search(r"^\s+--vocab-size 100\s+BPE vocabulary size$", r.stdout, re.MULTILINE)
    assert any(line.strip() == "--tag" for line in lines)
    assert "stage=" not in r.stdout.replace("--stage", "")  # exited before the recipe body


@pytest.mark.parametrize("stage,stop", [(0, 100), (1, 3), (2, 2), (3, 1), (-1, 0), (4, 4)])
def test_stage_selection(recipe, stage, stop):
    r = recipe("--stage", str(stage), "--stop-stage", str(stop))
    assert r.returncode == 0, r.stderr
    assert enabled(r) == [n for n in range(5) if stage <= n <= stop]


def test_non_integer_stage_dies_naming_the_variable(recipe):
    r = recipe("--stop-stage", "two")
    assert r.returncode == 1
    assert "$stop_stage must be an integer, got 'two'" in r.stderr


def test_done_marker_skips_a_completed_stage(recipe, tmp_path):
    assert recipe().returncode == 0
    assert (tmp_path / "exp" / ".done" / "stage-2").is_file()
    second = recipe()
    assert second.returncode == 0
    assert (tmp_path / "exp_count").read_text() == "ran\n"  # not rerun
    assert "Stage 2 already done" in second.stderr
    (tmp_path / "exp" / ".done" / "stage-2").unlink()
    assert recipe().returncode == 0
    assert (tmp_path / "exp_count").read_text() == "ran\nran\n"


def test_failed_stage_is_not_marked_and_reruns(recipe, tmp_path):
    failing = recipe(env={**os.environ, "FAIL": "1"})
    assert failing.returncode == 1
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(run\.sh:\d+\) ERROR: stage 2 failed on purpose$",
                     failing.stderr, re.MULTILINE)
    assert not (tmp_path / "exp" / ".done" / "stage-2").exists()
    assert recipe().returncode == 0
    assert (tmp_path / "exp_count").read_text() == "ran\nran\n"
    assert not list((tmp_path / "exp" / ".done").glob("*.??????"))  # no temp files left


def test_log_format_and_named_markers(tmp_path):
    script = tmp_path / "x.sh"
    script.write_text(f"""set -euo pipefail
. "{LOCAL}/common.sh"
log "hello   world"
stage_done out fbank && echo "done before"
mark_done out fbank
stage_done out fbank && echo "done after"
echo "root=$ASR_RECIPES_ROOT"
mark_done out "bad name"
echo "not reached"
""")
    r = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(x\.sh:3\) hello   world$", r.stderr, re.MULTILINE)
    assert r.stdout.splitlines() == ["done after", f"root={REPO}"]
    assert "usage: stage_done|mark_done DIR STAGE" in r.stderr


def test_install_python_deps_names_the_disk_left_when_pip_fails(tmp_path):
    """A pip failure (here: a virtualenv whose python refuses every install) ends with one message
    that names the virtualenv and the disk space left on its file system, and a failing status."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake_python = venv / "bin" / "python"
    fake_python.write_text("#!/bin/sh\necho 'ERROR: [Errno 28] No space left on device' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    done = subprocess.run(["bash", str(LOCAL / "install_python_deps.sh"), str(venv)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    message = done.stderr.splitlines()[-1]
    assert str(venv) in message
    assert re.search(r"\(\d+\.\d GB left on that disk\)", message)
    assert "CPU build of torch" in message


def test_help_lists_shared_options_from_option_files(tmp_path):
    """Options defined in a file listed in OPTION_FILES (as local/recipe_options.sh does) are
    listed in their own group; a script that sets one again changes its value, and its comment
    when it has one, and does not list it twice."""
    shared = tmp_path / "shared.sh"
    shared.write_text('OPTION_FILES+=("${BASH_SOURCE[0]}")\nstage=0  # first stage to run\nnj=4  # parallel jobs\n'
                      'beam=4  # beam width\n')
    script = tmp_path / "run.sh"
    script.write_text(f"""set -euo pipefail
. "{LOCAL}/common.sh"
. "{shared}"
task=commands  # the task
nj=2  # jobs for synthesis
beam=8
. "$ASR_RECIPES_ROOT/local/parse_options.sh"
echo "nj=$nj beam=$beam"
""")
    r = subprocess.run(["bash", str(script), "--beam", "6", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [line.split(None, 2) for line in r.stdout.splitlines() if line.startswith("  --")]
    assert lines == [["--task", "commands", "the task"], ["--stage", "0", "first stage to run"],
                     ["--nj", "2", "jobs for synthesis"], ["--beam", "6", "beam width"]]
    assert r.stdout.index("Options of this script") < r.stdout.index("--task") < r.stdout.index(
        "Options of every recipe") < r.stdout.index("--stage")
    r = subprocess.run(["bash", str(script), "--nj", "3"], capture_output=True, text=True, timeout=30)
    assert r.stdout == "nj=3 beam=8\n"

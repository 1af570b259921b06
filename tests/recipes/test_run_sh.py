"""Contract tests for every egs/*/run.sh: syntax, shared helpers, options, the same stage numbers
everywhere (data stages 0-3 in the recipe or from local/data_stages.sh, shared stages 4-10 from
local/stages.sh), --help against
the README's stage tables, no work outside stage guards, and entry-point overrides that exist in
the entry points' configs."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.recipes import recipe_sh

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.parent.name for p in (REPO / "egs").glob("*/run.sh"))

COMMON_OPTIONS = ["--stage", "--stop-stage", "--dl-dir", "--data-dir", "--exp-dir", "--results-md", "--nj", "--streaming",
                  "--decode-chunks", "--python", "--train-args", "--decode-args", "--epoch", "--avg", "--checkpoints",
                  "--experiment", "--model", "--ngpu", "--torchrun-args", "--beam", "--max-sym-per-frame", "--init-from",
                  "--lm-text", "--lm-dir", "--lm-model", "--lm-args", "--lm-scale", "--lodr-scale"]
#: Stages 4-10, the same in every recipe (local/stages.sh).
SHARED_STAGES = {4: ["train"], 5: ["average"], 6: ["decode"], 7: ["results"], 8: ["export"],
                 9: ["train_lm", "token_bigram", "export_lm"], 10: ["decode", "results"]}
SHARED_FUNCTIONS = ["stage_train", "stage_average", "stage_decode", "stage_results", "stage_export", "stage_lm",
                    "stage_lm_decode"]
#: Stages 0-2 of a corpus that lhotse downloads and prepares (local/data_stages.sh).
DATA_FUNCTIONS = ["stage_download", "stage_manifests", "stage_fbank"]
CORPUS_STAGES = {0: ["prepare", "prepare"], 1: ["prepare", "prepare"], 2: ["fbank", "fbank"], 3: ["tokenizer"],
                 **SHARED_STAGES}
EXPECTED = {
    "mini": {
        "options": COMMON_OPTIONS + ["--task", "--size", "--synth-args", "--augment", "--token-kind", "--vocab-size",
                                     "--lm-sentences"],
        # stage 0: speech and the LM text; stages 1-2: the speech corpus and the generated noise
        "stages": {0: ["synthesize", "synthesize_text"], 1: ["prepare", "prepare"], 2: ["fbank", "fbank"],
                   3: ["tokenizer"], **SHARED_STAGES},
        "data_functions": [],
    },
    "librispeech": {
        "options": COMMON_OPTIONS + ["--full-libri", "--use-musan", "--vocab-size"],
        "stages": CORPUS_STAGES,
        "data_functions": DATA_FUNCTIONS,
    },
    "aishell": {
        "options": COMMON_OPTIONS + ["--use-musan"],
        "stages": CORPUS_STAGES,
        "data_functions": DATA_FUNCTIONS,
    },
}


def run_sh(recipe):
    return REPO / "egs" / recipe / "run.sh"


def bash(recipe, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "ASR_RECIPES_ROOT"}
    return subprocess.run(["bash", str(run_sh(recipe)), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def tree(path: Path) -> list:
    return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_the_three_recipes_exist_and_have_expectations():
    assert {"mini", "librispeech", "aishell"} <= set(RECIPES)
    assert set(RECIPES) <= set(EXPECTED), "add the new recipe's options and stages to EXPECTED"


@pytest.mark.parametrize("recipe", RECIPES)
def test_bash_syntax(recipe):
    r = subprocess.run(["bash", "-n", str(run_sh(recipe))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_strict_mode_then_helpers_then_options(recipe):
    """common.sh, the shared stages (and data stages, where the recipe uses them) and options, the
    recipe's own options, parsing, checking."""
    lines = [line for _, line in recipe_sh.logical_lines(run_sh(recipe).read_text())]
    assert lines[0] == "set -euo pipefail"

    def index(ending):
        return next(i for i, line in enumerate(lines) if line.endswith(ending))

    data_stages = EXPECTED[recipe]["data_functions"] != []
    sources = ['/local/common.sh"', '/local/stages.sh"', '/local/recipe_options.sh"',
               *(['/local/data_stages.sh"'] if data_stages else []), '/local/parse_options.sh"']
    checks = ["resolve_recipe_options", *(["resolve_musan_option"] if data_stages else [])]
    order = [index(s) for s in sources] + [index(c) for c in checks]
    assert order == sorted(order) and order[0] > 0
    assert all(lines[i].startswith(". ") for i in order[:len(sources)])
    assert data_stages == any(line.endswith('/local/data_stages.sh"') for line in lines)


def _help(recipe, *args, cwd):
    r = bash(recipe, *args, "--help", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def help_stages(text: str) -> dict[int, tuple[str, str]]:
    """{stage: (name, what it does)} from the `  N name: description` lines of run.sh --help."""
    return {int(n): (name, what) for n, name, what in re.findall(r"^  (\d+) (\w+): (.*)$", text, re.MULTILINE)}


def help_options(text: str) -> dict[str, str]:
    """{--option: current value} of run.sh --help (values without blanks)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^  (--[a-z][a-z0-9-]*) ?(\S*)", text, re.MULTILINE)}


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_the_stages_and_options_and_does_nothing(recipe, tmp_path):
    before = tree(REPO / "egs" / recipe)
    text = _help(recipe, cwd=tmp_path)
    missing = set(EXPECTED[recipe]["options"]) - set(help_options(text))
    assert not missing
    assert sorted(help_stages(text)) == sorted(EXPECTED[recipe]["stages"])
    assert list(tmp_path.iterdir()) == [] and tree(REPO / "egs" / recipe) == before
    # current values: what was given, else the recipe's default
    given = help_options(_help(recipe, "--model", "tiny", "--epoch", "3", cwd=tmp_path))
    assert (given["--model"], given["--epoch"], given["--experiment"]) == ("tiny", "3", recipe)


def readme_stage_tables() -> tuple[dict, dict]:
    """The README's two stage tables: {recipe: {stage: cell}} for the data stages (one column per
    recipe) and {stage: cell} for the shared ones."""
    readme = (REPO / "README.md").read_text()

    def rows(columns):
        header = r"\| " + r" \| ".join(["stage", *columns]) + r" \|"
        m = re.search(rf"^{header}\n\|[-:| ]+\|\n((?:\|.*\|\n)+)", readme, re.MULTILINE)
        assert m, f"README: no stage table with the columns stage | {' | '.join(columns)}"
        return [[c.strip() for c in row.strip().strip("|").split("|")] for row in m.group(1).splitlines()]

    data = {}
    for number, *cells in rows(["mini", "librispeech", "aishell"]):
        for recipe, cell in zip(["mini", "librispeech", "aishell"], cells):
            data.setdefault(recipe, {})[int(number)] = cell
    shared = {int(number): cell for number, cell in rows(["every recipe"])}
    return data, shared


@pytest.mark.parametrize("recipe", RECIPES)
def test_readme_stage_tables_are_what_help_prints(recipe, tmp_path):
    stages = help_stages(_help(recipe, cwd=tmp_path))
    data, shared = readme_stage_tables()
    printed = {n: f"**{name}**: {what}" for n, (name, what) in stages.items()}
    assert {n: c for n, c in printed.items() if n < 4} == data[recipe]
    assert {n: c for n, c in printed.items() if n >= 4} == shared


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("stages", [["--stage", "99"], ["--stage", "0", "--stop-stage", "-1"]])
def test_no_stage_selected_runs_nothing(recipe, stages, tmp_path):
    """A missing interpreter proves no Python ran; empty dirs prove nothing was written."""
    before = tree(REPO / "egs" / recipe)
    work = tmp_path / "work"
    work.mkdir()
    r = bash(recipe, *stages, "--python", str(tmp_path / "no-such-python"), "--dl-dir", str(tmp_path / "dl"),
             "--data-dir", str(tmp_path / "data"), "--exp-dir", str(tmp_path / "exp"),
             "--results-md", str(tmp_path / "RESULTS.md"), cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and list(work.iterdir()) == []
    assert tree(REPO / "egs" / recipe) == before


@pytest.mark.parametrize("recipe", RECIPES)
def test_unknown_option_is_an_error(recipe, tmp_path):
    r = bash(recipe, "--stgae", "3", cwd=tmp_path)
    assert r.returncode != 0 and "unknown option --stgae" in r.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_no_work_outside_stage_guards(recipe):
    assert recipe_sh.work_outside_stages(run_sh(recipe).read_text()) == []


@pytest.mark.parametrize("recipe", RECIPES)
def test_stages_run_their_entry_points_and_leave_done_markers(recipe):
    """Data stages 0-3 in the recipe or from local/data_stages.sh (markers in the data dir), then
    the shared stage functions in order (markers in the exp dir), each logging and marking its
    own number."""
    stages, _ = recipe_sh.parse(run_sh(recipe).read_text())
    assert {s.number: s.entry_points() for s in stages} == EXPECTED[recipe]["stages"]
    assert [s.number for s in stages] == sorted(s.number for s in stages)
    data = [s for s in stages if s.number <= 3]
    assert all(s.marker_dir == '"$data_dir"' for s in data)
    assert [s.function for s in data if s.function] == EXPECTED[recipe]["data_functions"]
    assert [s.function for s in stages if s.number > 3] == SHARED_FUNCTIONS
    for s in stages:
        assert s.marker_dir, s.guard
        assert s.lines[-1][1] == f"mark_done {s.marker_dir} {s.number}", f"stage {s.number} must end with mark_done"
        assert any(line.startswith(f'log "Stage {s.number}:') for _, line in s.lines), f"stage {s.number} must log"
    defaults = recipe_sh.defaults(run_sh(recipe).read_text(), recipe)
    assert int(defaults["stop_stage"]) == stages[-1].number and int(defaults["stage"]) == 0


def test_shared_stage_functions_have_fixed_numbers_and_the_exp_dir():
    functions = recipe_sh.shared_stage_functions()
    assert {name: (f.number, f.marker_dir) for name, f in functions.items()} == {
        name: (n, '"$exp_dir"') for name, n in zip(SHARED_FUNCTIONS, SHARED_STAGES)}


def test_data_stage_functions_have_fixed_numbers_and_the_data_dir():
    functions = recipe_sh.data_stage_functions()
    assert {name: (f.number, f.marker_dir) for name, f in functions.items()} == {
        name: (n, '"$data_dir"') for n, name in enumerate(DATA_FUNCTIONS)}
    # stage_download shifts CORPUS and WHAT away: its "$@" is the recipe's overrides alone
    stages, _ = recipe_sh.parse('stage_download librispeech "LibriSpeech to x=y" lm_text=true\n')
    prepare = stages[0].invocations()[0]
    assert prepare[0] == "prepare" and prepare[1][-2:] == ["parts=$parts", "lm_text=true"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_recipe_sets_a_shared_option_only_to_change_its_default(recipe):
    """The shared options are defined once (local/recipe_options.sh); a recipe names one only
    to give it another default."""
    text = run_sh(recipe).read_text()
    shared = recipe_sh.literal_defaults((REPO / "local" / "recipe_options.sh").read_text())
    own = recipe_sh.literal_defaults(text)
    assert own, "the recipe's own options were not found"
    for name in set(own) & set(shared):
        assert own[name] != shared[name], f"{recipe}: {name}={own[name]} repeats the shared default"


def test_checker_reports_work_outside_stages():
    script = "\n".join([
        "set -euo pipefail",
        'RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)',
        "stage=0  # first stage",
        "mkdir -p data  # work before any guard",
        "files=$(ls data)",
        "python -m asr_recipes.bin.prepare \\",
        "  corpus=librispeech",
        'case "$x" in',
        '  true) y=1 ;;',
        '  *) rm -rf data ;;',
        "esac",
        'help_message="two lines, the second',
        '  with a # that is not a comment"',
        "if should_run 1 data; then",
        '  if [ -d x ]; then echo nested; fi',
        '  log "Stage 1: x"',
        "  mark_done data 1",
        "fi",
        'stage_train "data.musan.parts=[]"  # a shared stage: guarded inside local/stages.sh',
        "stage_bogus",
        "touch after",
    ])
    assert recipe_sh.work_outside_stages(script) == [
        "line 4: mkdir -p data", "line 5: files=$(ls data)",
        "line 6: python -m asr_recipes.bin.prepare corpus=librispeech", "line 10: *) rm -rf data ;;",
        "line 20: stage_bogus", "line 21: touch after",
    ]
    stages, _ = recipe_sh.parse(script)
    assert [(s.number, s.function, s.call_args) for s in stages] == [
        (1, None, []), (4, "stage_train", ["data.musan.parts=[]"])]
    assert recipe_sh.literal_defaults(script) == {"stage": "0"}  # help_message is no option
    with pytest.raises(ValueError, match="no closing fi"):
        recipe_sh.parse("if should_run 2 exp; then\n  echo x\n")


def _compose(entry_point: str, overrides: list):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=entry_point, overrides=overrides)


def _has_key(cfg, dotted: str) -> bool:
    parent, _, last = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return OmegaConf.is_dict(node) and last in node.keys()  # `in node` is False for ??? values


@pytest.mark.parametrize("recipe", RECIPES)
def test_overrides_name_existing_keys_and_every_required_one(recipe):
    """Each `python -m asr_recipes.bin.X key=...` names keys of conf/X.yaml (a typo would fail at
    run time, hours into a recipe) and gives every ??? key; experiment=... names a real file."""
    text = run_sh(recipe).read_text()
    defaults = recipe_sh.defaults(text, recipe)
    stages, _ = recipe_sh.parse(text)
    for stage in stages:
        for entry_point, args in stage.invocations():
            assert (REPO / "asr_recipes" / "bin" / f"{entry_point}.py").is_file(), entry_point
            pairs = [a.split("=", 1) for a in args if "=" in a and not a.startswith("$")]
            groups = []
            for key, value in pairs:
                if key == "experiment":
                    value = defaults["experiment"] if value == "$experiment" else value
                    assert (REPO / "conf" / "experiment" / f"{value}.yaml").is_file()
                    groups.append(f"experiment={value}")
            cfg = _compose(entry_point, groups)
            for key, _ in pairs:
                if key != "experiment":
                    assert _has_key(cfg, key), f"stage {stage.number}: {entry_point} has no config key {key!r}"
            given = {key for key, _ in pairs}
            required = set(OmegaConf.missing_keys(cfg))
            assert required <= given, f"stage {stage.number}: {entry_point} needs {required - given}"


@pytest.mark.parametrize("recipe", RECIPES)
def test_decoded_epoch_is_the_last_trained_one(recipe):
    """--epoch defaults to the experiment's trainer.num_epochs, so average/decode find epoch-N.pt;
    or, for a run budgeted by time, to "last" (the newest epoch-N.pt), and then training stops at
    an epoch end (trainer.whole_epochs), so no trained minutes fall outside the average."""
    defaults = recipe_sh.defaults(run_sh(recipe).read_text(), recipe)
    cfg = _compose("train", [f"experiment={defaults['experiment']}"])
    if defaults["epoch"] == "last":
        assert cfg.trainer.max_minutes is not None and cfg.trainer.whole_epochs
        assert int(defaults["avg"]) >= 1
        return
    assert int(defaults["epoch"]) == cfg.trainer.num_epochs
    assert 1 <= int(defaults["avg"]) <= int(defaults["epoch"])


def test_init_from_reaches_the_train_stage_as_an_absolute_path(tmp_path):
    """--init-from CKPT: the train stage gets init_from=<absolute CKPT> (fine-tuning); without it, none."""
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$ARGS_OUT"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ASR_RECIPES_ROOT"}
    for given in (["--init-from", "models/imported.pt"], []):
        out = tmp_path / "args.txt"
        out.unlink(missing_ok=True)
        r = subprocess.run(["bash", str(run_sh("mini")), "--stage", "4", "--stop-stage", "4", "--python", str(fake),
                            "--data-dir", str(tmp_path / "data"), "--exp-dir", str(tmp_path / f"exp{len(given)}"),
                            *given], cwd=tmp_path, env={**env, "ARGS_OUT": str(out)}, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        args = out.read_text().splitlines()
        assert "asr_recipes.bin.train" in args
        inits = [a for a in args if a.startswith("init_from=")]
        assert inits == ([f"init_from={tmp_path / 'models/imported.pt'}"] if given else [])

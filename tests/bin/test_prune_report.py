"""bin.prune_report end to end on the tiny trained model: the checkpoint as first argument, a
table row per s_range whose numbers are the diagnostic's, the picture, the settings source."""

import re

import pytest

from asr_recipes.bin import positional_checkpoint
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.data.datamodule import DataModule
from asr_recipes.diagnostics.prune_coverage import measure_batches
from asr_recipes.models.lattice import LatticeConfig
from tests.conftest import tiny_data_config
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import trained_exp


def test_report_table_and_picture(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    ckpt_path = exp / "epoch-3.pt"
    out = tmp_path / "report dir"
    argv = positional_checkpoint(["prune_report", str(ckpt_path), f"data.manifest_dir={tiny_corpus.fbank}",
                                  "data.corpus=librispeech", "parts=[dev-clean]", "data.num_workers=0",
                                  "data.max_duration=12", "device=cpu", "s_ranges=[2,3,40]", "max_batches=3",
                                  f"out_dir='{out}'"])
    assert argv[1] == f"checkpoint='{ckpt_path}'"
    args = argv[1:]
    run_entry("asr_recipes.bin.prune_report", *args)
    printed = capsys.readouterr().out
    text = (out / "prune-report.md").read_text()
    assert text in printed
    # The fixture's run recorded no training config: the default loss settings are used and said so.
    assert "prune_range 5, lm_scale 0.25, am_scale 0.0, delay_penalty 0.0 (from the default lattice settings" in text
    rows = {int(m[0]): m for m in re.findall(r"^\| (\d+) \| ([\d.]+)% \| (\S+) \| (\S+) \| (\d+) / (\d+) \| (\d+) / (\d+) \|$",
                                              text, re.MULTILINE)}
    assert sorted(rows) == [2, 3, 40]

    # The same numbers from the diagnostic on the same batches.
    ckpt = load_checkpoint(ckpt_path)
    model, tokenizer = model_from_checkpoint(ckpt)
    data = tiny_data_config(tiny_corpus, test_parts=["dev-clean"], max_duration=12)
    loader = DataModule(data, tokenizer).test_dataloaders()["dev-clean"]
    batches = [b for _, b in zip(range(3), loader)]
    stats = measure_batches(model, batches, [2, 3, 40], LatticeConfig())
    for s_range, row in rows.items():
        s = stats[s_range]
        assert float(row[1]) == pytest.approx(100 * s.coverage, abs=1e-4)
        assert int(row[4]) == s.escapes and int(row[5]) == s.utterances == sum(len(b["cut_ids"]) for b in batches)
    # s_range 40 exceeds every transcript: nothing is pruned.
    assert rows[40][1] == "100.0000" and rows[40][4] == "0"

    (png,) = out.glob("prune-band-*-s5.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000
    assert f"picture: {png.name}" in text


def test_missing_checkpoint_is_a_clear_error():
    with pytest.raises(AssertionError, match="exited with prune_report: no checkpoint"):
        run_entry("asr_recipes.bin.prune_report", "experiment=mini")

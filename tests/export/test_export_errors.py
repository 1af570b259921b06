"""Bad input gives one clear error and leaves no half-written output: corrupt or foreign
checkpoints, checkpoints sherpa-onnx cannot run, an export that fails its checks, an output
directory holding other files. A checkpoint decoded with several symbols per frame warns."""

import logging
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_recipes.checkpoint import load_checkpoint, save_checkpoint
from asr_recipes.export.compat import ExportError
from asr_recipes.export.exporter import export_checkpoint
from tests.export.exported import ZIPFORMER, exported, offline_checkpoint, random_checkpoint

REPO = Path(__file__).parents[2]


def run_export(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's asr_recipes, whatever the cwd
    return subprocess.run([sys.executable, "-m", "asr_recipes.bin.export", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    corrupt = tmp_path / "epoch-3.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    r = run_export(str(corrupt), f"out_dir={tmp_path / 'onnx'}", cwd=tmp_path)  # CKPT as the first argument
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"export: checkpoint {corrupt} cannot be read"), r.stderr
    assert not (tmp_path / "onnx").exists()


def test_checkpoint_of_another_version_is_one_clear_error(tmp_path):
    foreign = tmp_path / "other version.pt"
    torch.save({"format": "asr-recipes/0", "model": {}}, foreign)
    saved = sys.argv
    sys.argv = ["asr_recipes.bin.export", str(foreign), f"out_dir={tmp_path}/x"]  # a path with a space
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_module("asr_recipes.bin.export", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = saved
    message = exit_.value.code
    assert message.startswith(f"export: {foreign} is not an asr-recipes checkpoint") and "\n" not in message
    assert not (tmp_path / "x").exists()


@pytest.fixture
def ckpt(tiny_corpus, tmp_path_factory):
    return load_checkpoint(offline_checkpoint(tiny_corpus, tmp_path_factory))


def test_checkpoints_sherpa_cannot_run_are_refused(ckpt, tmp_path):
    out = tmp_path / "onnx"
    other_features = {**ckpt, "feature_config": {**ckpt["feature_config"], "frame_shift": 0.02}}
    with pytest.raises(ExportError, match="trained on features .* sherpa-onnx computes"):
        export_checkpoint(other_features, out, source="x.pt")
    with pytest.raises(ExportError, match="does not record the features"):
        export_checkpoint({k: v for k, v in ckpt.items() if k != "feature_config"}, out, source="x.pt")
    with pytest.raises(ExportError, match="offline model .* model.causal=true"):
        export_checkpoint(ckpt, out, source="x.pt", streaming=True)
    broken = {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if "joiner" not in k}}
    with pytest.raises(ExportError, match="x.pt: its weights do not fit"):
        export_checkpoint(broken, out, source="x.pt")
    causal = {**ckpt, "model_config": {**ckpt["model_config"], "causal": True}, "decoding": {}}
    with pytest.raises(ExportError, match="chunk_size"):
        export_checkpoint(causal, out, source="x.pt")
    assert not out.exists()


def test_several_symbols_per_frame_warns(ckpt, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        export_checkpoint({**ckpt, "decoding": {"max_sym_per_frame": 3}}, tmp_path / "onnx", source="x.pt",
                          sherpa_check=False)
    assert any("max_sym_per_frame=3" in r.getMessage() and "at most ONE" in r.getMessage() for r in caplog.records)


def test_failed_export_keeps_the_previous_one_and_a_good_one_replaces_it(ckpt, tiny_corpus, tmp_path_factory,
                                                                        tmp_path):
    out = tmp_path / "onnx"
    shutil.copytree(exported("offline", offline_checkpoint(tiny_corpus, tmp_path_factory), tmp_path_factory), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    nan = {**ckpt, "model": dict(ckpt["model"])}
    nan["model"]["joiner.output_linear.weight"] = torch.full_like(ckpt["model"]["joiner.output_linear.weight"],
                                                                  float("nan"))
    with pytest.raises(ExportError, match="joiner.onnx: output logit differs from PyTorch"):
        export_checkpoint(nan, out, source="nan.pt")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no temporary directories left

    export_checkpoint(ckpt, out, source="again.pt", int8=False, sherpa_check=False)  # replaces the int8 export
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "export.json",
                                                     "joiner.onnx", "tokens.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


def test_out_dir_with_other_files_is_refused(ckpt, tmp_path):
    save_checkpoint(tmp_path / "epoch-1.pt", {"model": {}})  # e.g. out_dir=exp by mistake
    with pytest.raises(ExportError, match="holds files that are not an export's"):
        export_checkpoint(ckpt, tmp_path, source="x.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-1.pt", "latest.txt"]


def test_zipformer_streaming_exports_sherpa_cannot_run_are_refused(tiny_corpus, tmp_path_factory, tmp_path):
    out = tmp_path / "onnx"
    causal = {**ZIPFORMER, "causal": True}
    ckpt = load_checkpoint(random_checkpoint("zipformer-errors", causal, tiny_corpus, tmp_path_factory,
                                             {"chunk_size": 6, "left_context": 8}))
    with pytest.raises(ExportError, match="x.pt: chunk_size=6: .* multiple of 4"):
        export_checkpoint(ckpt, out, source="x.pt")
    wide = load_checkpoint(random_checkpoint("zipformer-wide-front-end", {**causal, "embed_channels": [4, 8, 160]},
                                             tiny_corpus, tmp_path_factory, {"chunk_size": 4, "left_context": 8}))
    with pytest.raises(ExportError, match="160 channels .* embed_channels\\[2\\] <= 128"):
        export_checkpoint(wide, out, source="x.pt")
    assert not out.exists()

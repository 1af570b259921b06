"""The README's Deploy section runs as written: sherpa-onnx's command line and its Python API
decode a WAV with the exported files to PyTorch greedy search's transcript."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import DecodingOptions, decode
from tests.export.exported import exported, offline_checkpoint, wav_files

pytest.importorskip("sherpa_onnx")
README = (Path(__file__).parents[2] / "README.md").read_text()
DEPLOY = README.split("## Deploy", 1)[1].split("\n## ", 1)[0]


def block(lang: str, needle: str) -> str:
    return next(b for b in re.findall(rf"```{lang}\n(.*?)```", DEPLOY, flags=re.S) if needle in b)


@pytest.fixture(scope="module")
def setup(tiny_corpus, tmp_path_factory):
    ckpt = offline_checkpoint(tiny_corpus, tmp_path_factory)
    out = exported("offline", ckpt, tmp_path_factory)
    wav, samples = wav_files(tiny_corpus, tmp_path_factory.mktemp("readme_wav"), count=1)[0]
    model, tokenizer = model_from_checkpoint(load_checkpoint(ckpt))
    with torch.no_grad():
        feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))
        enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]))
        expected = tokenizer.decode([decode(model, enc, lens, DecodingOptions("greedy_search"))[0].tokens])[0]
    assert expected  # the rigged tiny model emits symbols
    return out, wav, expected


def test_command_line(setup):
    out, wav, expected = setup
    command = block("bash", "sherpa-onnx-offline").replace("exp/onnx", str(out)).replace("a.wav", str(wav))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, check=True)
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    assert result["text"].split() == expected.split()


def test_python_snippet(setup, capsys):
    out, wav, expected = setup
    code = block("python", "OfflineRecognizer").replace('"exp/onnx"', repr(str(out))).replace('"a.wav"', repr(str(wav)))
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == expected.split()

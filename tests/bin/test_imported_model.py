"""An imported icefall model is used like any checkpoint, with no extra flags: transcribe
(offline, and --streaming for a causal model: chunk by chunk with caches equals the whole file
with the chunk mask), decode and the prune report on a corpus, and the export to sherpa-onnx."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr_recipes.bin.transcribe import main as transcribe
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.checkpoint.icefall_import import import_icefall, write_import
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import decode
from asr_recipes.decoding.settings import resolve
from asr_recipes.export.compat import _check_features, _check_vocabulary, plan_export
from asr_recipes.export.exporter import export_checkpoint
from tests.decoding.entry import run_entry

FIXTURES = Path(__file__).parents[1] / "fixtures" / "icefall"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, Path]:
    """{"causal": the small causal model from icefall's epoch files (icefall's averaging), with its
    bpe.model; "offline": the six-stack offline model with a CTC head, from its state dict, with
    the AISHELL-style char tokens.txt}."""
    root = tmp_path_factory.mktemp("imported")
    causal = import_icefall(FIXTURES / "files/exp/epoch-2.pt", FIXTURES / "files/lang_bpe/bpe.model",
                            use_averaged_model=True)
    data = torch.load(FIXTURES / "zipformer_offline.pt", weights_only=True)
    torch.save(data["state_dict"], root / "icefall-offline.pt")
    offline = import_icefall(root / "icefall-offline.pt", FIXTURES / "files/lang_char/tokens.txt",
                             {k: ",".join(map(str, data["config"][k])) for k in ("num_heads", "encoder_unmasked_dim")})
    return {"causal": write_import(causal, root / "causal"), "offline": write_import(offline, root / "offline")}


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> str:
    """2 s of a tone sweep with noise at 16 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    x = 0.3 * np.sin(2 * np.pi * (150 + 600 * t) * t) + 0.05 * rng.standard_normal(t.size)
    path = tmp_path_factory.mktemp("audio") / "sweep.wav"
    soundfile.write(path, x.astype(np.float32), 16000)
    return str(path)


@torch.no_grad()
def reference_text(ckpt: dict, wav: str, chunk: int = 0, left: int = -1) -> str:
    """The file's fbank through model.encode (with the chunk mask when chunk > 0) and the recorded search."""
    model, tokenizer = model_from_checkpoint(ckpt)
    samples, _ = soundfile.read(wav, dtype="float32")
    feats = torch.from_numpy(fbank_extractor().extract(samples[None], 16000))  # (T, 80)
    enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]), chunk, left)
    result = decode(model, enc, lens, resolve(ckpt).options())[0]
    return tokenizer.decode([result.tokens])[0]


def test_transcribe_offline_with_the_recorded_settings(imported, wav, capsys):
    ckpt = load_checkpoint(imported["offline"])
    assert transcribe([str(imported["offline"]), wav, "--device", "cpu"]) == 0
    want = reference_text(ckpt, wav)
    assert want  # the random model says something, in its Chinese characters
    assert capsys.readouterr().out.splitlines() == [f"{wav}\t{want}"]


def test_transcribe_streaming_equals_the_chunk_masked_whole_file(imported, wav, capsys):
    ckpt = load_checkpoint(imported["causal"])
    chunk, left = ckpt["decoding"]["chunk_size"], ckpt["decoding"]["left_context"]  # icefall's 16 / 32 at 50 Hz
    assert transcribe([str(imported["causal"]), wav, "--streaming", "--device", "cpu"]) == 0
    want = reference_text(ckpt, wav, chunk, left)
    assert want
    assert capsys.readouterr().out.splitlines() == [f"{wav}\t{want}"]


def test_imported_models_export_to_sherpa_onnx(imported, tmp_path):
    """sherpa-onnx's features and a vocabulary tokens.txt can hold (<sos/eos> included); the causal
    model exports in the streaming Zipformer layout with icefall's chunk and left context, the
    offline one in the offline layout with its CTC graph, each checked by the exporter against
    PyTorch in onnxruntime and loaded and run by sherpa-onnx."""
    pytest.importorskip("sherpa_onnx")
    for name, path in imported.items():
        ckpt = load_checkpoint(path)
        _check_features(ckpt, name)
        assert _check_vocabulary(ckpt, name).tokens[:3] == ["<blk>", "<sos/eos>", "<unk>"]
        plan = plan_export(ckpt, name)
        assert plan.streaming == (name == "causal") and (plan.ctc or name == "causal")
        assert (plan.chunk_size, plan.left_context) == ((8, 16) if name == "causal" else (None, None))
        report = export_checkpoint(ckpt, tmp_path / name, source=name)
        assert report.sherpa_checked and report.model_type == "zipformer2"
        assert {"encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"} <= set(report.file_bytes)
        assert ("ctc.onnx" in report.file_bytes) == plan.ctc


def test_decode_and_prune_report_on_a_corpus(imported, tiny_corpus, tmp_path, capsys):
    exp = tmp_path / "exp"
    run_entry("asr_recipes.bin.decode", f"exp_dir={exp}", f"checkpoint={imported['causal']}",
              f"data.manifest_dir={tiny_corpus.fbank}", "data.corpus=librispeech", "data.test_parts=[test-clean]",
              "data.num_workers=0", "data.max_duration=30", "device=cpu", "methods=[greedy_search,modified_beam_search]")
    out = capsys.readouterr().out
    for method in ("greedy_search", "modified_beam_search"):
        assert f"%WER test-clean {method} " in out
        assert list((exp / method).glob("recogs-test-clean-imported-*chunk-8-left-16-simulated*.txt"))
    run_entry("asr_recipes.bin.prune_report", f"checkpoint={imported['causal']}", f"data.manifest_dir={tiny_corpus.fbank}",
              "data.corpus=librispeech", "parts=[dev-clean]", "data.num_workers=0", "data.max_duration=12",
              "device=cpu", "s_ranges=[2,5]", "max_batches=2", "plot=false", f"out_dir={tmp_path / 'report'}")
    text = (tmp_path / "report/prune-report.md").read_text()
    # the band settings are icefall's training run's, which epoch-N.pt records
    assert "prune_range 5, lm_scale 0.25, am_scale 0.0, delay_penalty 0.0 (from the checkpoint's training config)" in text
    assert "epoch 2, step 1000" in text

"""bin.transcribe: WAV at 8 kHz and FLAC at 16 kHz give the transcripts of lhotse-computed
features; missing, corrupt and too-short files are reported on stderr, the rest still done."""

import subprocess

import numpy as np
import soundfile
import torch
from lhotse import Recording, load_manifest

from asr_recipes.bin.transcribe import main
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import DecodingOptions, decode
from tests.decoding.trained_exp import lower_blank_logit, trained_exp


def reference_text(ckpt, recording: Recording) -> str:
    """Features through lhotse's own cut API (as the fbank stage computes them), greedy search."""
    model, tokenizer = model_from_checkpoint(ckpt)
    feats = torch.from_numpy(recording.resample(16000).to_cut().compute_features(fbank_extractor()))  # (T, 80)
    with torch.no_grad():
        enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]))
    return tokenizer.decode([decode(model, enc, lens, DecodingOptions("greedy_search"))[0].tokens])[0]


def test_transcribe_files_of_any_rate_and_report_bad_ones(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    checkpoint = exp / "epoch-3.pt"
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    flac = recordings["3001-300101-0000"].sources[0].source  # 16 kHz FLAC of the LibriSpeech layout
    other = recordings["3001-300101-0001"].sources[0].source
    wav = tmp_path / "eight kHz=copy.wav"  # a name Hydra-style key=value parsing would mangle
    subprocess.run(["sox", other, "-r", "8000", str(wav)], check=True)
    assert soundfile.info(str(wav)).samplerate == 8000 and soundfile.info(flac).samplerate == 16000
    missing = tmp_path / "missing.flac"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(800, dtype=np.float32), 16000)  # 50 ms

    code = main([str(checkpoint), flac, str(missing), str(wav), str(corrupt), str(short), "--device", "cpu"])
    out, err = capsys.readouterr()
    ckpt = load_checkpoint(checkpoint)
    expected = [(flac, reference_text(ckpt, Recording.from_file(flac))),
                (str(wav), reference_text(ckpt, Recording.from_file(wav)))]
    assert all(text for _, text in expected)  # the rigged model emits symbols
    assert out.splitlines() == [f"{path}\t{text}" for path, text in expected]
    errors = err.strip().splitlines()
    assert len(errors) == 3
    assert str(missing) in errors[0] and "no such file" in errors[0]
    assert str(corrupt) in errors[1] and "cannot read audio" in errors[1]
    assert str(short) in errors[2] and "too short" in errors[2]
    assert code == 1


def test_all_readable_gives_status_0_and_a_bad_checkpoint_status_2(tiny_corpus, tmp_path_factory, tmp_path,
                                                                    capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    flac = recordings["3001-300101-0000"].sources[0].source
    assert main([str(exp / "epoch-3.pt"), flac, "--method", "modified_beam_search", "--beam", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"{flac}\t")
    assert main([str(tmp_path / "nope.pt"), flac]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err

"""bin.transcribe --streaming on a generated file: the streamed transcript equals the whole
file decoded with the chunk mask (computed here from lhotse's own features), partials grow,
each piece's compute time is reported, --realtime paces the input; decoding defaults come
from the checkpoint."""

import time

import soundfile
import torch
from lhotse import Recording, load_manifest

from asr_recipes.bin.transcribe import main
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.data.features import fbank_extractor
from asr_recipes.decoding import DecodingOptions, decode
from tests.decoding.trained_exp import lower_blank_logit, trained_exp


def chunked_reference(ckpt, path, chunk, left, max_sym=1) -> str:
    """Simulated streaming: the whole file with the chunk mask, greedy search."""
    model, tokenizer = model_from_checkpoint(ckpt)
    feats = torch.from_numpy(Recording.from_file(path).to_cut().compute_features(fbank_extractor()))  # (T, 80)
    with torch.no_grad():
        enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]), chunk, left)
    result = decode(model, enc, lens, DecodingOptions("greedy_search", max_sym_per_frame=max_sym))[0]
    return tokenizer.decode([result.tokens])[0]


def test_streaming_transcribe_equals_chunk_masked_decoding(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", causal=True,
                      decoding={"chunk_size": 4, "left_context": 16, "max_sym_per_frame": 2})
    lower_blank_logit(exp, 3.0)
    checkpoint = exp / "epoch-3.pt"
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    flac = recordings["3001-300101-0000"].sources[0].source
    ckpt = load_checkpoint(checkpoint)
    assert ckpt["decoding"]["chunk_size"] == 4 and ckpt["model_config"]["causal"]

    assert main([str(checkpoint), flac, "--streaming", "--chunk-ms", "160", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    want = chunked_reference(ckpt, flac, chunk=4, left=16, max_sym=2)  # chunk from the flag, the rest recorded
    assert want  # the rigged model says something
    assert out.splitlines() == [f"{flac}\t{want}"]
    partials = [line.split("\t")[2] for line in err.splitlines() if line.startswith("partial\t")]
    assert len(partials) >= 2 and partials[-1] == want
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:]))  # the transcript only grows
    assert "pieces of 160 ms: compute per piece mean" in err

    # without --chunk-ms: the recorded chunk; without --streaming: the same through the chunk mask
    assert main([str(checkpoint), flac, "--chunk-ms", "320", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{flac}\t{chunked_reference(ckpt, flac, 8, 16, 2)}"]


def test_realtime_paces_the_input(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", causal=True,
                      decoding={"chunk_size": 4, "left_context": 16, "max_sym_per_frame": 2})
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    flac = recordings["3001-300101-0001"].sources[0].source
    duration = soundfile.info(flac).duration
    started = time.perf_counter()
    assert main([str(exp / "epoch-3.pt"), flac, "--streaming", "--realtime", "--device", "cpu"]) == 0
    assert time.perf_counter() - started >= duration - 0.05
    assert capsys.readouterr().out.startswith(f"{flac}\t")


def test_offline_model_refuses_streaming_and_defaults_come_from_the_checkpoint(tiny_corpus, tmp_path_factory,
                                                                             tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", decoding={"max_sym_per_frame": 3})
    lower_blank_logit(exp, 3.0)
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    flac = recordings["3001-300101-0000"].sources[0].source
    checkpoint = str(exp / "epoch-3.pt")
    assert main([checkpoint, flac, "--streaming"]) == 2
    assert "not a streaming model" in capsys.readouterr().err
    assert main([checkpoint, flac]) == 0
    recorded = capsys.readouterr().out
    assert main([checkpoint, flac, "--max-sym-per-frame", "3"]) == 0
    assert capsys.readouterr().out == recorded
    assert main([checkpoint, flac, "--max-sym-per-frame", "1"]) == 0
    assert capsys.readouterr().out != recorded  # the rigged model needs more than one symbol per frame

"""The entry points on a Zipformer checkpoint, with no Zipformer-specific flags: a tiny causal
Zipformer with a CTC head (tests/decoding/trained_exp.py) through decode (transducer and CTC
searches; chunk by chunk equals the chunk mask), average, transcribe (--streaming equals the
chunk-masked decoding; word ends from the Zipformer's own look-ahead), prune_report and
streaming_report."""

import json
import re

import pytest
import torch
from lhotse import load_manifest

from asr_recipes.bin.transcribe import main as transcribe
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.decoding.transcribe import load_features
from asr_recipes.scoring import read_recogs, read_wer_summary
from tests.bin.test_decode import decode_args
from tests.bin.test_transcribe_streaming import chunked_reference
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import standardise_encoder_frames, trained_exp

pytestmark = pytest.mark.slow  # ~15 s of shared training, then about as long per test
DECODING = {"chunk_size": 4, "left_context": 16, "max_sym_per_frame": 2}
METHODS = ("greedy_search", "modified_beam_search", "ctc_greedy_search", "ctc_prefix_beam_search")


@pytest.fixture
def exp(tiny_corpus, tmp_path_factory, tmp_path):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", causal=True, decoding=DECODING,
                      zipformer=True)
    # the barely trained model says the same on every frame: make its decisions follow the audio
    recordings = load_manifest(tiny_corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    features = [load_features(r.sources[0].source, 9) for r in list(recordings)[:4]]
    standardise_encoder_frames(exp, features, chunk=(4, 16))
    assert load_checkpoint(exp / "epoch-3.pt")["model_config"]["encoder"] == "zipformer"
    return exp


def flac(corpus, cut_id="3001-300101-0000") -> str:
    recordings = load_manifest(corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    return recordings[cut_id].sources[0].source


def test_decode_chunk_by_chunk_equals_the_chunk_mask_for_every_search(tiny_corpus, exp, capsys):
    methods = f"methods=[{','.join(METHODS)}]"
    for extra in ((), ("streaming=true",), ("chunk_size=0",)):
        run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", methods, "beam=3", *extra))
    assert "chunk-4-left-16-simulated" in capsys.readouterr().out  # the checkpoint's recorded chunk settings
    for method in METHODS:
        (simulated_file,) = (exp / method).glob("recogs-test-clean-*-chunk-4-left-16-simulated.txt")
        simulated = read_recogs(simulated_file)
        streamed = read_recogs(simulated_file.with_name(simulated_file.name.replace("simulated", "streaming")))
        assert streamed == simulated and len(simulated) == 24, method
        if not method.startswith("ctc"):
            assert len({tuple(h) for _, _, h in simulated}) > 1  # the hypotheses depend on the audio
        (full,) = [p for p in (exp / method).glob("wer-summary-test-clean-*.txt") if "chunk" not in p.name]
        assert list(read_wer_summary(full).values())[0] >= 0  # full context: a key without chunk settings


def test_average_then_decode(tiny_corpus, exp):
    run_entry("asr_recipes.bin.average", f"exp_dir={exp}", "epoch=3", "avg=2")
    averaged = load_checkpoint(exp / "averaged-epoch-3-avg-2.pt")
    assert "model_training_state" not in averaged and averaged["model_config"]["encoder"] == "zipformer"
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", "avg=2",
                                                     "methods=[greedy_search]"))
    assert list((exp / "greedy_search").glob("recogs-test-clean-epoch-3-avg-2-*.txt"))


def test_transcribe_streaming_equals_the_chunk_masked_decoding(tiny_corpus, exp, capsys):
    path, checkpoint = flac(tiny_corpus), exp / "epoch-3.pt"
    ckpt = load_checkpoint(checkpoint)
    assert transcribe([str(checkpoint), path, "--streaming", "--device", "cpu"]) == 0
    want = chunked_reference(ckpt, path, chunk=4, left=16, max_sym=2)
    assert want and capsys.readouterr().out.splitlines() == [f"{path}\t{want}"]
    # the chunk must be one the Zipformer takes: a multiple of 4 encoder frames (160 ms)
    assert transcribe([str(checkpoint), path, "--streaming", "--chunk-ms", "200", "--device", "cpu"]) == 2
    assert "multiple of 4" in capsys.readouterr().err


def test_word_ends_use_the_zipformers_look_ahead(tiny_corpus, exp, capsys):
    """With the search's frames, a word ends 40 ms + 130 ms (13 feature frames of look-ahead)
    after the start of its last letter's frame; with the CTC alignment, on the CTC head's frames."""
    path, checkpoint = flac(tiny_corpus), str(exp / "epoch-3.pt")
    assert transcribe([checkpoint, path, "--timestamps", "--time-source", "search", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    letters = [t for t in record["tokens"] if t["token"] != "▁"]
    ends, starts, i = [], [], 0
    for word in record["words"]:
        starts.append(letters[i]["time"])
        i += len(word["word"])
        ends.append(round(letters[i - 1]["frame"] * 0.04 + 0.17, 3))
    assert record["words"] and [w["end"] for w in record["words"]] == ends
    assert [w["start"] for w in record["words"]] == starts
    # the CTC alignment's words (the default with a head) end on the same look-ahead
    assert transcribe([checkpoint, path, "--timestamps", "--device", "cpu"]) == 0
    aligned = json.loads(capsys.readouterr().out)
    model, _ = model_from_checkpoint(load_checkpoint(checkpoint))
    feats = load_features(path, model.encoder.min_input_frames())
    with torch.no_grad():
        frames = int(model.encode(feats[None], torch.tensor([feats.size(0)]), 4, 16)[1][0])
    assert all(0 <= w["start"] < w["end"] <= frames * 0.04 + 0.17 + 1e-9 for w in aligned["words"])
    frame_ends = [(w["end"] - 0.17) / 0.04 for w in aligned["words"]]  # on the 40 ms grid, 170 ms on
    assert aligned["words"] and all(abs(f - round(f)) < 1e-6 for f in frame_ends)


def test_prune_and_streaming_reports(tiny_corpus, exp, tmp_path, capsys):
    checkpoint = exp / "epoch-3.pt"
    data = (f"data.manifest_dir={tiny_corpus.fbank}", "data.corpus=librispeech", "data.num_workers=0",
            "data.max_duration=12", "device=cpu")
    run_entry("asr_recipes.bin.prune_report", f"checkpoint={checkpoint}", "parts=[dev-clean]", "s_ranges=[2,5]",
              "max_batches=2", f"out_dir={tmp_path / 'prune'}", *data)
    assert re.search(r"^\| 5 \| [\d.]+% \|", (tmp_path / "prune" / "prune-report.md").read_text(), re.MULTILINE)
    out = tmp_path / "streaming.md"
    run_entry("asr_recipes.bin.streaming_report", f"checkpoint={checkpoint}", f"reference={checkpoint}",
              "chunk_sizes=[4,8]", "methods=[greedy_search]", "parts=[test-clean]", "max_utterances=4", f"out={out}",
              "name=zipformer", *data)
    rows = re.findall(r"^\| zipformer \| (\d+) \| greedy_search \|", out.read_text(), re.MULTILINE)
    assert rows == ["160", "320"]
    capsys.readouterr()

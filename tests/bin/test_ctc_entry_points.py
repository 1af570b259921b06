"""decode and transcribe with a checkpoint that has a CTC head: the CTC search methods write
scoring files, --timestamps reports CTC-aligned word times (the runs of torchaudio's forced
alignment of the hypothesis), and models without a head refuse what needs one."""

import json

import torch
import torchaudio
from lhotse import load_manifest

from asr_recipes.bin.transcribe import main as transcribe
from asr_recipes.decoding import DecodingOptions, decode
from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.decoding.transcribe import load_features
from asr_recipes.decoding.word_times import word_times
from asr_recipes.scoring import read_recogs
from tests.bin.test_decode import decode_args
from tests.bin.test_transcribe_extras import flacs
from tests.decoding.entry import run_entry
from tests.decoding.test_ctc_align import runs
from tests.decoding.trained_exp import lower_blank_logit, trained_exp


def add_ctc_head(exp):
    """Give every epoch checkpoint of ``exp`` a CTC head: the key in its model_config and, as
    weights, a copy of the trained simple_am_proj (also a linear map from encoder frames to
    token scores), so the head's posteriors follow the audio without another training."""
    for path in sorted(exp.glob("epoch-*.pt")):
        ckpt = torch.load(path, weights_only=False)
        ckpt["model_config"] = {**ckpt["model_config"], "ctc_head": True}
        for state in (ckpt["model"], ckpt["model_avg"]):
            for name in ("weight", "bias"):
                state[f"ctc_head.linear.{name}"] = state[f"simple_am_proj.{name}"].clone()
        torch.save(ckpt, path)


def test_transcribe_timestamps_come_from_the_ctc_alignment(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    add_ctc_head(exp)
    files = flacs(tiny_corpus, 3)
    checkpoint = str(exp / "epoch-3.pt")
    common = [checkpoint, *files, "--device", "cpu", "--max-sym-per-frame", "2", "--timestamps"]
    outputs = {}
    for source in ("auto", "ctc", "search"):
        assert transcribe([*common, "--time-source", source]) == 0
        outputs[source] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert outputs["auto"] == outputs["ctc"]
    assert [r["text"] for r in outputs["ctc"]] == [r["text"] for r in outputs["search"]]
    # the expected words: the greedy hypothesis force-aligned with torchaudio directly
    model, tokenizer = model_from_checkpoint(load_checkpoint(checkpoint))
    aligned = 0
    for path, record in zip(files, outputs["ctc"]):
        features = load_features(path, model.encoder.min_input_frames())
        with torch.no_grad():
            enc, lens = model.encode(features[None], torch.tensor([features.size(0)]))
            (result,) = decode(model, enc, lens, DecodingOptions(max_sym_per_frame=2, timestamps="search"))
            log_probs = model.ctc_log_probs(enc)  # (1, T', V)
        if not result.tokens or len(result.tokens) * 2 > int(lens[0]):
            continue  # too many tokens for a CTC alignment: the search's frames are used
        path_, _ = torchaudio.functional.forced_align(log_probs, torch.tensor([result.tokens], dtype=torch.int32))
        want = word_times(tokenizer, result.tokens, result.timestamps, runs(path_[0].tolist()),
                          lookahead_frames=model.encoder.lookahead_frames)
        assert record["words"] == [w.to_dict() for w in want]
        aligned += 1
    assert aligned >= 1


def test_decode_with_the_ctc_methods(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    add_ctc_head(exp)
    methods = ("ctc_greedy_search", "ctc_prefix_beam_search")
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", "beam=3",
                                                     f"methods=[{','.join(methods)}]"))
    out = capsys.readouterr().out
    sups = load_manifest(tiny_corpus.manifests / "librispeech_supervisions_test-clean.jsonl.gz")
    for method, settings in zip(methods, ("max-sym-per-frame-1", "beam-3-max-sym-per-frame-1")):
        key = f"epoch-3-avg-1-use-averaged-model-{settings}"
        recogs = read_recogs(exp / method / f"recogs-test-clean-{key}.txt")
        assert {u for u, _, _ in recogs} == {s.id for s in sups}
        assert (exp / method / f"ctm-test-clean-{key}.ctm").is_file()
        assert f"%WER test-clean {method} " in out


def test_models_without_a_head_refuse_ctc_methods_and_ctc_times(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    [flac] = flacs(tiny_corpus, 1)
    checkpoint = str(exp / "epoch-3.pt")
    assert transcribe([checkpoint, flac, "--device", "cpu", "--method", "ctc_greedy_search"]) == 2
    assert "has none" in capsys.readouterr().err
    assert transcribe([checkpoint, flac, "--device", "cpu", "--timestamps", "--time-source", "ctc"]) == 2
    assert "timestamps=ctc" in capsys.readouterr().err

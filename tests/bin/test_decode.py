"""bin.decode end to end on a tiny trained model: all three methods, scoring files that parse
back, %WER/%SPEED lines, and the choice of weights (averaged file reused, else averaged
on the fly with the same result)."""

import json
import re

import kaldialign
import pytest
from lhotse import load_manifest

from asr_recipes.data.tokenizer import CharTokenizer
from asr_recipes.decoding.runner import scoring_unit, to_units
from asr_recipes.scoring import read_errs_header, read_recogs, read_wer_summary
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import lower_blank_logit, trained_exp

METHODS = ("greedy_search", "beam_search", "modified_beam_search")


def decode_args(corpus, exp, *extra):
    return (f"exp_dir={exp}", f"data.manifest_dir={corpus.fbank}", "data.corpus=librispeech",
            "data.test_parts=[test-clean]", "data.num_workers=0", "data.max_duration=30", "device=cpu", *extra)


def test_decode_writes_scoring_and_speed_files_for_every_method(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp, 1.5)  # 2.0 makes this model say WWW to every utterance at 2 symbols per frame
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", "avg=2", "beam=3",
                                                     "max_sym_per_frame=2", f"methods=[{','.join(METHODS)}]"))
    out = capsys.readouterr().out
    # references straight from the prepared supervisions
    sups = load_manifest(tiny_corpus.manifests / "librispeech_supervisions_test-clean.jsonl.gz")
    refs = {s.id: s.text.split() for s in sups}
    weights = "epoch-3-avg-2-use-averaged-model"
    for method in METHODS:
        settings = "max-sym-per-frame-2" if method == "greedy_search" else "beam-3-max-sym-per-frame-2"
        key = f"{weights}-{settings}"
        d = exp / method
        recogs = read_recogs(d / f"recogs-test-clean-{key}.txt")
        assert {u: ref for u, ref, _ in recogs} == refs
        assert len({tuple(hyp) for _, _, hyp in recogs}) > 1  # outputs depend on the audio
        # error counts recomputed from the recogs with kaldialign
        errors = sum(kaldialign.edit_distance(ref, hyp)["total"] for _, ref, hyp in recogs)
        header = read_errs_header(d / f"errs-test-clean-{key}.txt")
        assert header.ins + header.dels + header.subs == errors
        assert header.ref_len == sum(len(r) for r in refs.values())
        rate = read_wer_summary(d / f"wer-summary-test-clean-{key}.txt")[key]
        assert rate == pytest.approx(round(100 * errors / header.ref_len, 2))
        assert re.search(rf"^%WER test-clean {method} {rate:.2f}% \[{errors} / {header.ref_len}, \d+ ins, "
                         r"\d+ del, \d+ sub\]$", out, re.MULTILINE)
        assert re.search(rf"^%SPEED test-clean {method} RTF \d+\.\d+, \d+\.\d utt/s", out, re.MULTILINE)
        speed = json.loads((d / f"speed-test-clean-{key}.json").read_text())
        assert speed["num_utterances"] == len(refs) and speed["rtf"] > 0 and speed["unit"] == "word"
        assert speed["model"]["num_parameters"] > 0 and speed["weights"] == weights
    assert not (exp / "averaged-epoch-3-avg-2.pt").exists()  # averaged on the fly, nothing written


def test_decode_reuses_the_averaged_file_and_falls_back_to_the_newest_epoch(tiny_corpus, tmp_path_factory,
                                                                             tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    key = "epoch-3-avg-2-use-averaged-model-max-sym-per-frame-1"
    recogs = exp / "greedy_search" / f"recogs-test-clean-{key}.txt"
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", "avg=2", "methods=[greedy_search]"))
    on_the_fly = recogs.read_text()
    assert len({line.split("\t")[1] for line in on_the_fly.splitlines()[1::2]}) > 1  # hyps differ
    run_entry("asr_recipes.bin.average", f"exp_dir={exp}", "epoch=3", "avg=2")
    recogs.unlink()
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", "avg=2", "methods=[greedy_search]"))
    assert recogs.read_text() == on_the_fly
    assert "averaged-epoch-3-avg-2.pt" in capsys.readouterr().out  # the log names the file used
    # no epoch given: the newest epoch checkpoint, as itself
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "methods=[greedy_search]"))
    assert (exp / "greedy_search" / "wer-summary-test-clean-epoch-3-avg-1-max-sym-per-frame-1.txt").is_file()


def test_scoring_unit_follows_the_tokenizer():
    chinese = CharTokenizer.train(["今天天气很好", "你好"], word_boundary=False)
    english = CharTokenizer.train(["CALL HOME", "STOP"], word_boundary=True)
    assert scoring_unit(chinese) == "char" and scoring_unit(english) == "word"
    assert to_units("今天 天气", "char") == ["今", "天", "天", "气"]
    assert to_units(" CALL  HOME ", "word") == ["CALL", "HOME"]


def test_streaming_model_decodes_chunk_by_chunk_as_with_the_chunk_mask(tiny_corpus, tmp_path_factory, tmp_path,
                                                                       capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", causal=True,
                      decoding={"chunk_size": 4, "left_context": 16, "max_sym_per_frame": 2})
    lower_blank_logit(exp, 3.0)
    methods = "methods=[greedy_search,modified_beam_search]"
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", methods, "beam=3"))
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", methods, "beam=3", "streaming=true"))
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", methods, "beam=3", "chunk_size=0"))
    out = capsys.readouterr().out
    assert "chunk-4-left-16-simulated" in out  # the checkpoint's recorded chunk settings
    for method, settings in (("greedy_search", "max-sym-per-frame-2"), ("modified_beam_search",
                                                                        "beam-3-max-sym-per-frame-2")):
        key = f"epoch-3-avg-1-use-averaged-model-{settings}"
        simulated = read_recogs(exp / method / f"recogs-test-clean-{key}-chunk-4-left-16-simulated.txt")
        streamed = read_recogs(exp / method / f"recogs-test-clean-{key}-chunk-4-left-16-streaming.txt")
        assert len({tuple(h) for _, _, h in simulated}) > 1
        assert streamed == simulated
        # chunk_size=0: the same model with full context, keyed without chunk settings
        assert len(read_recogs(exp / method / f"recogs-test-clean-{key}.txt")) == len(simulated)

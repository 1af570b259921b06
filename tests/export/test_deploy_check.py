"""bin.deploy_check on the tiny corpus: one row per decoder and precision; the fp32 greedy
decoders agree with PyTorch on every utterance, as the client tests require."""

import pytest

from tests.decoding.entry import run_entry
from tests.export.exported import exported, offline_checkpoint

pytest.importorskip("sherpa_onnx")


def test_deploy_check_prints_the_table(tiny_corpus, tmp_path_factory, capsys):
    ckpt = offline_checkpoint(tiny_corpus, tmp_path_factory)
    out = exported("offline", ckpt, tmp_path_factory)
    cuts = tiny_corpus.fbank / "librispeech_cuts_test-clean.jsonl.gz"
    run_entry("asr_recipes.bin.deploy_check", str(ckpt), f"export_dir={out}", f"cuts={cuts}", "limit=6")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"checkpoint {ckpt} | export {out} |") and "6 utterances" in lines[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("PyTorch greedy", "fp32"),
        ("onnxruntime greedy (ours)", "fp32"), ("sherpa-onnx greedy", "fp32"), ("sherpa-onnx modified beam 4", "fp32"),
        ("onnxruntime greedy (ours)", "int8"), ("sherpa-onnx greedy", "int8"), ("sherpa-onnx modified beam 4", "int8")]
    by_name = {(r[0], r[1]): r for r in rows}
    for name in ("onnxruntime greedy (ours)", "sherpa-onnx greedy"):
        assert by_name[(name, "fp32")][3] == "100.0"  # identical transcripts
        assert by_name[(name, "fp32")][2] == rows[0][2]  # so the same WER
    assert all(float(r[4]) > 0 and float(r[5]) > 0 and float(r[6]) > 0 for r in rows)  # RTFs, size
    assert float(by_name[("sherpa-onnx greedy", "int8")][6]) < float(by_name[("sherpa-onnx greedy", "fp32")][6])


def test_deploy_check_of_a_streaming_export(tiny_corpus, tmp_path_factory):
    """PyTorch's chunked encoder over sherpa-onnx's windows is the reference of streaming rows."""
    from asr_recipes.checkpoint import load_checkpoint
    from asr_recipes.export.deploy_check import deploy_check
    from tests.export.exported import causal_checkpoint

    # The shared causal model (blank logit lowered by 2.5) emits letters on the silent tail padding
    # too, so every decoder must decode the same padded frames for the rows to agree.
    ckpt = causal_checkpoint(tiny_corpus, tmp_path_factory)
    out = exported("streaming", ckpt, tmp_path_factory)
    cuts = tiny_corpus.fbank / "librispeech_cuts_test-clean.jsonl.gz"
    rows, info = deploy_check(load_checkpoint(ckpt), out, cuts, limit=3)
    assert info["streaming"] and info["chunk"] == (4, 8) and info["tail_padding_seconds"] == 0.66
    assert rows[0].decoder == "PyTorch greedy (chunked)" and any(rows[0].hyps)
    for r in rows[1:3]:  # onnxruntime and sherpa-onnx greedy, fp32
        assert r.precision == "fp32" and "greedy" in r.decoder and r.hyps == rows[0].hyps and r.identical == 100.0

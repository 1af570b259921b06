"""bin.transcribe --timestamps / --nbest / --hotwords-file on a tiny trained model: JSON lines
whose words are the text, times inside the file, n-best ordered and led by the 1-best; the
streaming path gives the chunk-masked path's times; bad hotwords files exit with status 2."""

import json

import soundfile
from lhotse import load_manifest

from asr_recipes.bin.transcribe import main
from tests.decoding.trained_exp import lower_blank_logit, trained_exp


def flacs(corpus, n):
    recordings = load_manifest(corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    return [r.sources[0].source for r in list(recordings)[:n]]


def test_timestamps_and_nbest_json_lines(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    files = flacs(tiny_corpus, 3)
    checkpoint = str(exp / "epoch-3.pt")
    assert main([checkpoint, *files, "--device", "cpu", "--max-sym-per-frame", "2",
                 "--method", "modified_beam_search"]) == 0
    plain = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    assert main([checkpoint, *files, "--device", "cpu", "--max-sym-per-frame", "2", "--method",
                 "modified_beam_search", "--timestamps", "--nbest", "3"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in records] == files and [r["text"] for r in records] == plain
    assert any(r["words"] for r in records)
    for r in records:
        duration = soundfile.info(r["file"]).duration
        assert [w["word"] for w in r["words"]] == r["text"].split()
        assert all(0 <= w["start"] < w["end"] <= duration + 0.08 for w in r["words"])
        assert "".join(t["token"] for t in r["tokens"]).replace("▁", " ").split() == r["text"].split()
        assert [t["frame"] for t in r["tokens"]] == sorted(t["frame"] for t in r["tokens"])
        per_symbol = [h["score"] / (h["num_tokens"] + 2) for h in r["nbest"]]  # context size 2
        assert 1 <= len(per_symbol) <= 3 and per_symbol == sorted(per_symbol, reverse=True)
        assert r["nbest"][0]["text"] == r["text"]


def test_streaming_timestamps_equal_the_chunk_masked_ones(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp", causal=True,
                      decoding={"chunk_size": 4, "left_context": 16, "max_sym_per_frame": 2})
    lower_blank_logit(exp, 3.0)
    files = flacs(tiny_corpus, 2)
    checkpoint = str(exp / "epoch-3.pt")
    assert main([checkpoint, *files, "--device", "cpu", "--timestamps"]) == 0
    masked = capsys.readouterr().out.splitlines()
    assert main([checkpoint, *files, "--device", "cpu", "--timestamps", "--streaming"]) == 0
    streamed = capsys.readouterr().out.splitlines()
    assert streamed == masked and any(json.loads(line)["words"] for line in masked)


def test_bad_hotwords_and_options_exit_2(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    [flac] = flacs(tiny_corpus, 1)
    checkpoint = str(exp / "epoch-3.pt")
    hot = tmp_path / "hot.txt"
    hot.write_text("CALL\ncall home\n")
    assert main([checkpoint, flac, "--method", "modified_beam_search", "--hotwords-file", str(hot)]) == 2
    assert f"{hot}:2: the model's tokenizer has no token for" in capsys.readouterr().err
    hot.write_text("CALL\n")
    assert main([checkpoint, flac, "--method", "greedy_search", "--hotwords-file", str(hot)]) == 2
    assert "greedy_search does not use hotwords" in capsys.readouterr().err
    assert main([checkpoint, flac, "--method", "modified_beam_search", "--beam", "2", "--nbest", "3"]) == 2
    assert "raise beam" in capsys.readouterr().err
    assert main([checkpoint, flac, "--method", "modified_beam_search", "--hotwords-file", str(hot)]) == 0

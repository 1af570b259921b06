"""Tokenizers: id conventions, round trips, OOV handling, serialisation, the entry point.

References are independent of the code under test: sentencepiece's own processor loaded
from the saved model file, and normalisations / OOV counts computed here by hand.
"""

import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from lhotse import (AudioSource, CutSet, Recording, RecordingSet, SupervisionSegment,
                    SupervisionSet)

from asr_recipes.constants import BLANK_ID
from asr_recipes.data.tokenizer import (CharTokenizer, SentencePieceTokenizer, ensure_tokenizer,
                                        load_tokenizer, read_manifest_texts, tokenizer_from_dict,
                                        train_tokenizer)

REPO = Path(__file__).resolve().parents[2]
WORDS = ("DIAL FIVE OH TWO NINE SET A TIMER FOR TEN MINUTES TURN THE LIGHTS OFF CALL UP "
         "DOWN VOLUME DON'T SEVEN EIGHT").split()
ZH = ["今天 天气 很 好", "我们 去 公园 散步", "明天 会 下雨 吗", "请 打开 客厅 的 灯", "我 想 听 音乐"]


def english(n=300, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def squeeze(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def en_tokenizers():
    texts = english()
    return {
        "bpe": train_tokenizer("bpe", texts, 60),
        "unigram": train_tokenizer("unigram", texts, 40),
        "char": train_tokenizer("char", texts, None),
    }


@pytest.mark.parametrize("kind", ["bpe", "unigram", "char"])
def test_blank_is_zero_and_unk_is_one(en_tokenizers, kind):
    tok = en_tokenizers[kind]
    assert tok.blank_id == BLANK_ID == 0 and tok.unk_id == 1
    assert tok.id_to_token(0) == "<blk>" and tok.id_to_token(1) == "<unk>"
    ids = tok.encode(english(50, seed=1))
    assert all(0 not in seq for seq in ids)  # blank is never a label
    assert all(2 <= i < tok.vocab_size for seq in ids for i in seq)


@pytest.mark.parametrize("kind,size", [("bpe", 60), ("unigram", 40)])
def test_sentencepiece_vocab_size_and_ids_match_sentencepiece_itself(tmp_path, kind, size):
    tok = train_tokenizer(kind, english(), size)
    assert tok.vocab_size == size
    tok.save(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sentencepiece.model"))
    assert sp.get_piece_size() == size
    assert sp.id_to_piece(0) == "<blk>" and sp.unk_id() == 1
    texts = english(20, seed=3)
    assert tok.encode(texts) == sp.encode(texts)
    table = (tmp_path / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert table == [f"{sp.id_to_piece(i)} {i}" for i in range(size)]


def test_sentencepiece_too_large_vocab_is_a_clear_error():
    with pytest.raises(ValueError, match="lower vocab_size"):
        train_tokenizer("unigram", english(50), 5000)


@pytest.mark.parametrize("kind", ["bpe", "unigram", "char"])
def test_english_round_trip(en_tokenizers, kind):
    tok = en_tokenizers[kind]
    texts = ["  DIAL FIVE   OH TWO  ", "DON'T TURN THE LIGHTS OFF", "", "A"]
    assert tok.decode(tok.encode(texts)) == [squeeze(t) for t in texts]


def test_char_english_tokens_are_letters_apostrophe_and_boundary(en_tokenizers):
    tok = en_tokenizers["char"]
    expected = sorted(set("".join(english())) - {" "})
    assert tok.tokens == ["<blk>", "<unk>", "\u2581"] + expected
    ids = tok.encode(["UP DOWN"])[0]
    assert [tok.id_to_token(i) for i in ids] == list("UP") + ["\u2581"] + list("DOWN")


def test_chinese_char_one_token_per_character_no_spaces():
    tok = train_tokenizer("char", ZH, None, word_boundary=False)
    chars = sorted(set("".join(ZH)) - {" "})
    assert tok.tokens == ["<blk>", "<unk>"] + chars
    for text, ids in zip(ZH, tok.encode(ZH)):
        assert [tok.id_to_token(i) for i in ids] == list(text.replace(" ", ""))
    assert tok.decode(tok.encode(ZH)) == [t.replace(" ", "") for t in ZH]


def test_chinese_bpe_round_trip():
    texts = [t.replace(" ", "") for t in ZH] * 20
    tok = train_tokenizer("bpe", texts, 40)
    assert tok.vocab_size == 40
    assert tok.decode(tok.encode(texts[:5])) == texts[:5]


def test_char_oov_maps_to_unk_and_is_counted():
    train = english()
    tok = train_tokenizer("char", train, None)
    known = set("".join(train))
    texts = ["DIAL ÉXQ 9", "TURN ON"]
    ids = tok.encode(texts)
    oov = sum(c not in known for t in texts for c in t if c != " ")
    assert oov > 0
    assert tok.count_unknown(texts) == oov == sum(seq.count(1) for seq in ids)
    assert tok.decode(ids)[1] == "TURN ON"
    assert tok.decode(ids)[0] == squeeze(re.sub(f"[^{re.escape(''.join(known))}]", "", texts[0]))


def test_char_min_count_sends_rare_characters_to_unk():
    texts = ["AAB", "AAC", "AB"]  # counts: A=5, B=2, C=1
    tok = train_tokenizer("char", texts, None, min_count=2)
    assert tok.tokens == ["<blk>", "<unk>", "\u2581", "A", "B"]
    assert tok.encode(["CAB"]) == [[1, 3, 4]]


def test_char_vocab_size_is_an_upper_bound_not_a_silent_cut():
    with pytest.raises(ValueError, match="raise vocab_size"):
        train_tokenizer("char", ZH, 5, word_boundary=False)
    assert train_tokenizer("char", ["AB"], 10).vocab_size == 5


def test_sentencepiece_oov_runs_map_to_one_unk_each(en_tokenizers):
    tok = en_tokenizers["bpe"]
    known = set("".join(english()))
    texts = ["DIAL xyz FIVE", "q TEN zz"]
    runs = sum(len(re.findall(f"[^{re.escape(''.join(known))}]+", t)) for t in texts)
    assert tok.count_unknown(texts) == runs == 3
    assert tok.decode(tok.encode(texts)) == ["DIAL FIVE", "TEN"]


@pytest.mark.parametrize("kind", ["bpe", "unigram", "char"])
def test_dict_round_trip_through_json_and_torch_save(en_tokenizers, kind):
    tok = en_tokenizers[kind]
    texts = english(30, seed=7) + ["DIAL ÉX"]
    via_json = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    buf = io.BytesIO()
    torch.save({"tokenizer": tok.to_dict()}, buf)
    buf.seek(0)
    via_torch = tokenizer_from_dict(torch.load(buf, weights_only=True)["tokenizer"])
    for other in (via_json, via_torch):
        assert type(other) is type(tok)
        assert other.encode(texts) == tok.encode(texts)
        assert other.tokens == tok.tokens and other.settings == tok.settings


def test_save_and_load_directory(tmp_path, en_tokenizers):
    for kind, tok in en_tokenizers.items():
        tok.save(tmp_path / kind)
        again = load_tokenizer(tmp_path / kind)
        assert again.encode(english(10)) == tok.encode(english(10))
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="asr_recipes.bin.tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_bad_inputs_are_clear_errors(en_tokenizers):
    tok = en_tokenizers["char"]
    with pytest.raises(TypeError, match="list of strings"):
        tok.encode("DIAL")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([[tok.vocab_size]])
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer("wordpiece", ["A"], 10)
    with pytest.raises(TypeError, match="pathlib.Path"):
        train_tokenizer("char", "some/file.txt", None)
    with pytest.raises(ValueError, match="SentencePiece model has id 0"):
        SentencePieceTokenizer(_plain_sentencepiece_model(), {})


def _plain_sentencepiece_model():
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(english(100)), model_writer=buf,
                                   vocab_size=30, minloglevel=2)
    return buf.getvalue()


def test_train_from_text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("\n".join(ZH) + "\n\n", encoding="utf-8")
    assert train_tokenizer("char", path, None).tokens == train_tokenizer("char", ZH, None).tokens


def _write_manifests(tmp_path, texts):
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"u{i}", recording_id=f"r{i}", start=0.0, duration=1.0, text=t)
        for i, t in enumerate(texts)
    )
    recs = RecordingSet.from_recordings(
        Recording(id=f"r{i}", sources=[AudioSource(type="file", channels=[0], source="/none.wav")],
                  sampling_rate=16000, num_samples=16000, duration=1.0)
        for i in range(len(texts))
    )
    sups.to_file(tmp_path / "sups.jsonl.gz")
    CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(tmp_path / "cuts.jsonl.gz")
    return tmp_path / "sups.jsonl.gz", tmp_path / "cuts.jsonl.gz"


def test_read_manifest_texts_from_supervisions_and_cuts(tmp_path):
    texts = english(20) + [""]
    sups, cuts = _write_manifests(tmp_path, texts)
    assert read_manifest_texts(sups) == texts[:-1]
    assert sorted(read_manifest_texts(cuts)) == sorted(texts[:-1])


def test_ensure_tokenizer_is_idempotent_and_guards_other_settings(tmp_path):
    sups, _ = _write_manifests(tmp_path, english(200))
    out = tmp_path / "lang"
    tok = ensure_tokenizer(sups, out, "bpe", 50)
    stamp = (out / "tokenizer.json").stat().st_mtime_ns
    again = ensure_tokenizer(sups, out, "bpe", 50)
    assert (out / "tokenizer.json").stat().st_mtime_ns == stamp
    assert again.encode(english(5)) == tok.encode(english(5))
    with pytest.raises(FileExistsError, match="vocab_size"):
        ensure_tokenizer(sups, out, "bpe", 40)
    assert ensure_tokenizer(sups, out, "bpe", 40, force=True).vocab_size == 40
    assert load_tokenizer(out).vocab_size == 40


def test_entry_point_trains_with_library_settings(tmp_path):
    _, cuts = _write_manifests(tmp_path, english(100))
    out = tmp_path / "lang_char"
    cmd = [sys.executable, "-m", "asr_recipes.bin.tokenizer", f"cuts={cuts}", f"out_dir={out}",
           "kind=char", "vocab_size=null"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr + first.stdout
    tok = load_tokenizer(out)
    assert isinstance(tok, CharTokenizer)
    assert tok.tokens[3:] == sorted(set("".join(english(100))) - {" "})
    # The config passed the same settings the library computes: a rerun would be a no-op.
    stamp = (out / "tokenizer.json").stat().st_mtime_ns
    ensure_tokenizer(cuts, out, "char", None)
    assert (out / "tokenizer.json").stat().st_mtime_ns == stamp

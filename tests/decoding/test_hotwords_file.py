"""Hotwords files: phrases, per-phrase scores, comments; every bad input gets one error
naming the file and line."""

import pytest

from asr_recipes.data.tokenizer import CharTokenizer
from asr_recipes.decoding.hotwords import HotwordsError, parse_line, read_hotwords

TOKENIZER = CharTokenizer.train(["ZANZIBAR NEW YORK CITY", "OSLO"], word_boundary=True)


def write(tmp_path, text, name="hot.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_phrases_scores_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "# places\nZANZIBAR\n\n  NEW   YORK CITY :2.5\nOSLO :0\n")
    got = read_hotwords(path, TOKENIZER, score=1.25)
    assert [(h.text, h.score) for h in got] == [("ZANZIBAR", 1.25), ("NEW YORK CITY", 2.5), ("OSLO", 0.0)]
    b = TOKENIZER.encode(["B"])[0][0]
    boundary = TOKENIZER.encode(["A B"])[0][1]
    assert got[0].tokens[5] == b and len(got[0].tokens) == 8  # one token per letter
    assert got[1].tokens.count(boundary) == 2  # the spaces are word-boundary tokens
    assert got[1].option == (got[1].tokens, 2.5)


def test_parse_line():
    assert parse_line("NEW YORK :3") == ("NEW YORK", 3.0)
    assert parse_line("A:B") == ("A:B", None)  # a colon inside the phrase is text
    with pytest.raises(ValueError, match="not a number"):
        parse_line("NEW YORK :high")


@pytest.mark.parametrize("text,match", [
    ("ZANZIBAR\nOSLO :x\n", r"hot.txt:2: score 'x' is not a number"),
    ("OSLO :-1\n", r"hot.txt:1: score '-1' must be a finite number >= 0"),
    ("OSLO\n  :2\n", r"hot.txt:2: a score without a phrase"),
    ("OSLO\nQUITO\n", r"hot.txt:2: the model's tokenizer has no token for 'QU' in 'QUITO'.*remove the line"),
    ("Oslo\n", r"hot.txt:1: .*no token for 'slo' in 'Oslo'; this model's tokens are upper case: write 'OSLO'"),
    ("# nothing\n\n", r"hot.txt: no phrases"),
])
def test_bad_lines_name_file_line_and_fix(tmp_path, text, match):
    with pytest.raises(HotwordsError, match=match):
        read_hotwords(write(tmp_path, text), TOKENIZER)


def test_unreadable_files(tmp_path):
    with pytest.raises(HotwordsError, match=r"missing.txt: cannot read the hotwords file \(No such file"):
        read_hotwords(tmp_path / "missing.txt", TOKENIZER)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ZÜRICH\n".encode("latin-1"))
    with pytest.raises(HotwordsError, match="latin1.txt: cannot read the hotwords file.*UTF-8"):
        read_hotwords(latin1, TOKENIZER)
    with pytest.raises(HotwordsError, match="score must be"):
        read_hotwords(write(tmp_path, "OSLO\n"), TOKENIZER, score=-2.0)

"""recogs / errs / wer-summary files: layout, and parsing back to kaldialign's numbers."""

import re

import kaldialign
import pytest

from asr_recipes.scoring import (read_errs_header, read_recogs, read_wer_summary, score,
                                 write_scoring_files)

RESULTS = [
    ("utt-b", "A B C D".split(), "A X C".split()),
    ("utt-a", "HELLO WORLD".split(), []),
    ("utt-c", [], ["UH"]),
    ("utt-d", "SET A TIMER".split(), "SET A TIMER FOR".split()),
]


def kaldialign_totals(results, unit="word"):
    tot = {"ins": 0, "del": 0, "sub": 0, "ref_len": 0}
    for _, ref, hyp in results:
        if unit == "char":
            ref, hyp = list("".join(ref).replace(" ", "")), list("".join(hyp).replace(" ", ""))
        d = kaldialign.edit_distance(ref, hyp)
        for k in tot:
            tot[k] += d[k]
    return tot


def section(text, title):
    """Non-empty lines after the line starting with ``title`` up to the next blank line."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    out = []
    for line in lines[start:]:
        if not line:
            break
        out.append(line)
    return out


def test_files_parse_back_to_kaldialign_numbers(tmp_path):
    stats = write_scoring_files(tmp_path, "test-clean", "greedy_search", RESULTS)
    tot = kaldialign_totals(RESULTS)
    errors = tot["ins"] + tot["del"] + tot["sub"]
    wer = round(100.0 * errors / tot["ref_len"], 2)

    header = read_errs_header(tmp_path / "errs-test-clean-greedy_search.txt")
    assert (header.ins, header.dels, header.subs, header.ref_len) == (
        tot["ins"], tot["del"], tot["sub"], tot["ref_len"])
    assert header.correct == tot["ref_len"] - tot["del"] - tot["sub"]
    assert header.error_rate == wer
    assert read_wer_summary(tmp_path / "wer-summary-test-clean-greedy_search.txt") == {
        "greedy_search": wer}

    recogs = read_recogs(tmp_path / "recogs-test-clean-greedy_search.txt")
    assert recogs == sorted(RESULTS)
    again = score(recogs)
    assert (again.ins, again.dels, again.subs, again.ref_len) == (
        stats.ins, stats.dels, stats.subs, stats.ref_len)
    assert stats.summary("test-clean", "greedy_search") == (
        f"%WER test-clean greedy_search {wer:.2f}% [{errors} / {tot['ref_len']}, "
        f"{tot['ins']} ins, {tot['del']} del, {tot['sub']} sub]")
    assert not list(tmp_path.glob(".*.tmp"))


def test_recogs_layout_is_icefall_style(tmp_path):
    write_scoring_files(tmp_path, "dev", "beam_4", RESULTS)
    lines = (tmp_path / "recogs-dev-beam_4.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:4] == [
        "utt-a:\tref=['HELLO', 'WORLD']", "utt-a:\thyp=[]",
        "utt-b:\tref=['A', 'B', 'C', 'D']", "utt-b:\thyp=['A', 'X', 'C']",
    ]
    assert (tmp_path / "wer-summary-dev-beam_4.txt").read_text() == "settings\tWER\nbeam_4\t66.67\n"


def test_errs_layout_sections(tmp_path):
    write_scoring_files(tmp_path, "test", "k", RESULTS)
    text = (tmp_path / "errs-test-k.txt").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == "%WER = 66.67"
    assert lines[1] == ("Errors: 2 insertions, 3 deletions, 1 substitutions, "
                        "over 9 reference words (5 correct)")
    assert section(text, "PER-UTT DETAILS:") == [
        "utt-a:\t(HELLO->*) (WORLD->*)",
        "utt-b:\tA (B->X) C (D->*)",
        "utt-c:\t(*->UH)",
        "utt-d:\tSET A TIMER (*->FOR)",
    ]
    assert section(text, "SUBSTITUTIONS:") == ["1   B -> X"]
    assert section(text, "DELETIONS:") == ["1   D", "1   HELLO", "1   WORLD"]
    assert section(text, "INSERTIONS:") == ["1   FOR", "1   UH"]
    stats = {row.split()[0]: tuple(map(int, row.split()[1:])) for row in section(text, "PER-WORD STATS:")}
    # word: (correct, errors it takes part in, count in ref, count in hyp), counted by hand.
    assert stats["A"] == (2, 0, 2, 2)
    assert stats["B"] == (0, 1, 1, 0) and stats["X"] == (0, 1, 0, 1)
    assert stats["HELLO"] == (0, 1, 1, 0) and stats["UH"] == (0, 1, 0, 1)


def test_char_mode_files(tmp_path):
    results = [("a1", ["今天", "天气", "很", "好"], ["今天天汽很好啊"]), ("a2", ["我们", "去"], [])]
    stats = write_scoring_files(tmp_path, "aishell-test", "greedy", results, unit="char")
    tot = kaldialign_totals(results, unit="char")
    cer = round(100.0 * (tot["ins"] + tot["del"] + tot["sub"]) / tot["ref_len"], 2)
    text = (tmp_path / "errs-aishell-test-greedy.txt").read_text(encoding="utf-8")
    assert text.startswith(f"%WER = {cer:.2f}\n%CER = {cer:.2f}\nErrors: ")
    header = read_errs_header(tmp_path / "errs-aishell-test-greedy.txt")
    assert (header.error_rate, header.ref_len, header.ins, header.dels, header.subs) == (
        cer, tot["ref_len"], tot["ins"], tot["del"], tot["sub"])
    assert "a1:\t今 天 天 (气->汽) 很 好 (*->啊)" in text
    assert read_wer_summary(tmp_path / "wer-summary-aishell-test-greedy.txt") == {"greedy": cer}
    assert score(read_recogs(tmp_path / "recogs-aishell-test-greedy.txt"), "char") == stats


def test_rewrite_replaces_files(tmp_path):
    write_scoring_files(tmp_path, "test", "k", RESULTS)
    write_scoring_files(tmp_path, "test", "k", [("x", ["A"], ["A"])])
    assert read_wer_summary(tmp_path / "wer-summary-test-k.txt") == {"k": 0.0}
    assert read_recogs(tmp_path / "recogs-test-k.txt") == [("x", ["A"], ["A"])]


@pytest.mark.parametrize("test_set,key", [("test clean", "k"), ("test", "a/b"), ("", "k")])
def test_names_that_cannot_be_file_names(tmp_path, test_set, key):
    with pytest.raises(ValueError, match="file name"):
        write_scoring_files(tmp_path, test_set, key, RESULTS)


def test_readers_reject_other_files(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("hello\n")
    for reader in (read_errs_header, read_wer_summary, read_recogs):
        with pytest.raises(ValueError, match=re.escape(str(bad))):
            reader(bad)

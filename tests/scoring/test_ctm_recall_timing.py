"""CTM round trip, hotword recall and word boundary errors on hand-made examples."""

import pytest

from asr_recipes.scoring.ctm import format_ctm, read_ctm, write_ctm
from asr_recipes.scoring.hotwords import hotword_recall
from asr_recipes.scoring.word_timing import boundary_errors, summarize


def test_ctm_lines_sorted_and_read_back(tmp_path):
    words = {"b-2": [("WORLD", 0.84, 1.2), ("HELLO", 0.12, 0.5)], "a-1": [("YES", 1.0, 1.04)]}
    assert format_ctm(words) == ("a-1 1 1.000 0.040 YES\n"
                                 "b-2 1 0.120 0.380 HELLO\n"
                                 "b-2 1 0.840 0.360 WORLD\n")
    path = write_ctm(tmp_path / "x.ctm", words)
    back = read_ctm(path)
    assert back["b-2"] == [("HELLO", 0.12, pytest.approx(0.5)), ("WORLD", 0.84, pytest.approx(1.2))]
    (tmp_path / "bad.ctm").write_text("a-1 1 zero 0.1 YES\n")
    with pytest.raises(ValueError, match="bad.ctm:1: not a CTM line"):
        read_ctm(tmp_path / "bad.ctm")
    with pytest.raises(ValueError, match="whitespace"):
        format_ctm({"a b": [("X", 0, 1)]})


def test_hotword_recall_counts_occurrences_spoken_correctly():
    results = [
        ("u1", "CALL NEW YORK NOW".split(), "CALL NEW YORK NOW".split()),  # hit
        ("u2", "NEW YORK AND OSLO".split(), "NEW PORK AND OSLO".split()),  # NEW YORK missed, OSLO hit
        ("u3", "OSLO OSLO".split(), "OSLO".split()),  # one of two
        ("u4", "NEW YORK".split(), "NEW BIG YORK".split()),  # an insertion inside: missed
        ("u5", "NOTHING HERE".split(), "NEW YORK".split()),  # not spoken: no occurrence
    ]
    recall = hotword_recall(results, ["NEW  YORK", "OSLO", "ZANZIBAR"])
    assert (recall.hits, recall.occurrences) == (3, 6)
    assert recall.per_phrase == {"NEW YORK": [1, 3], "OSLO": [2, 3]}
    assert recall.summary("p", "m") == "%HOTWORDS p m recall 50.00% [3 / 6 occurrences of 2 phrases]"
    assert recall.format().splitlines()[-1] == "total\t3\t6"


def test_boundary_errors_pair_only_correct_words():
    ref = [("A", 0.3, 0.6), ("B", 1.0, 1.4), ("C", 2.0, 2.5)]
    hyp = [("A", 0.32, 0.66), ("X", 1.0, 1.3), ("C", 1.9, 2.5), ("D", 3.0, 3.1)]
    errors = boundary_errors(ref, hyp)
    assert [(e.word, round(e.start, 3), round(e.end, 3), e.duration) for e in errors] == [
        ("A", 0.02, 0.06, pytest.approx(0.3)), ("C", -0.1, 0.0, 0.5)]
    s = summarize(errors, ref_words=3, tolerance=0.05)
    assert s.matched == 2 and s.mean_abs_start == pytest.approx(0.06) and s.mean_abs_end == pytest.approx(0.03)
    assert s.within == pytest.approx(0.5) and s.max_abs == pytest.approx(0.1)
    assert s.median_abs_start == pytest.approx(0.06) and s.median_abs_end == pytest.approx(0.03)

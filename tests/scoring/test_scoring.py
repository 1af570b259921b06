"""score(): counts and rates against kaldialign.edit_distance called directly, per utterance."""

import random

import kaldialign
import pytest

from asr_recipes.scoring import score

# (id, ref, hyp): substitution, deletion, insertion, empty hyp, empty ref, both empty, exact.
HAND_MADE = [
    ("u1", "A B C D", "A X C"),
    ("u2", "THE CAT SAT", "THE CAT SAT DOWN"),
    ("u3", "HELLO WORLD", ""),
    ("u4", "", "UH"),
    ("u5", "", ""),
    ("u6", "TURN THE LIGHTS OFF", "TURN LIGHTS OF"),
    ("u0", "ONE TWO THREE", "ONE TWO THREE"),
]


def word_results(triples):
    return [(u, r.split(), h.split()) for u, r, h in triples]


def reference_totals(pairs):
    """Sum kaldialign.edit_distance over (ref units, hyp units) pairs."""
    tot = {"ins": 0, "del": 0, "sub": 0, "ref_len": 0}
    for ref, hyp in pairs:
        d = kaldialign.edit_distance(ref, hyp)
        for k in tot:
            tot[k] += d[k]
    return tot


def assert_matches(stats, pairs_by_id):
    for utt in stats.utterances:
        d = kaldialign.edit_distance(*pairs_by_id[utt.utt_id])
        assert (utt.ins, utt.dels, utt.subs) == (d["ins"], d["del"], d["sub"]), utt.utt_id
    tot = reference_totals(pairs_by_id.values())
    assert (stats.ins, stats.dels, stats.subs, stats.ref_len) == (
        tot["ins"], tot["del"], tot["sub"], tot["ref_len"])
    errors = tot["ins"] + tot["del"] + tot["sub"]
    assert stats.errors == errors
    assert stats.correct == tot["ref_len"] - tot["del"] - tot["sub"]
    assert stats.error_rate == pytest.approx(100.0 * errors / tot["ref_len"])


def test_wer_on_hand_made_pairs_equals_kaldialign():
    stats = score(word_results(HAND_MADE), unit="word")
    assert_matches(stats, {u: (r.split(), h.split()) for u, r, h in HAND_MADE})
    # Worked by hand: u1 1S 1D, u2 1I, u3 2D, u4 1I, u6 1D 1S over 16 reference words.
    assert (stats.ins, stats.dels, stats.subs, stats.ref_len) == (2, 4, 2, 16)
    assert stats.summary("test-clean", "greedy_search") == (
        "%WER test-clean greedy_search 50.00% [8 / 16, 2 ins, 4 del, 2 sub]")
    assert [u.utt_id for u in stats.utterances] == sorted(u for u, _, _ in HAND_MADE)


def test_cer_splits_into_characters_and_drops_spaces():
    zh = [("a1", "今天 天气 很 好", "今天天汽很好啊"), ("a2", "我们 去 公园", ""), ("a3", "", "嗯"),
          ("a4", "明天 会 下雨", "明 天会下雨")]
    stats = score(word_results(zh), unit="char")
    chars = {u: ([c for c in r if c != " "], [c for c in h if c != " "]) for u, r, h in zh}
    assert_matches(stats, chars)
    assert stats.label == "CER" and stats.summary("test", "k").startswith("%CER test k ")
    a4 = next(u for u in stats.utterances if u.utt_id == "a4")
    assert a4.errors == 0 and a4.ref == tuple("明天会下雨")
    # English words in char mode: the space between words is not a character.
    en = score([("e", ["AB", "C"], ["ABC"])], unit="char")
    assert en.ref_len == 3 and en.errors == 0
    # Whole sentences as single tokens give the same CER.
    whole = score([(u, [r], [h]) for u, r, h in zh], unit="char")
    assert (whole.ins, whole.dels, whole.subs, whole.ref_len) == (
        stats.ins, stats.dels, stats.subs, stats.ref_len)


def test_random_pairs_match_kaldialign_including_ties():
    rng = random.Random(0)
    vocab = ["A", "B", "C", "D"]
    triples = []
    for i in range(300):
        ref = [rng.choice(vocab) for _ in range(rng.randint(0, 7))]
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 7))]
        triples.append((f"r{i:03d}", ref, hyp))
    triples.append(("r999", ["A"], []))  # keep ref_len > 0 regardless of the draw
    stats = score(triples)
    assert_matches(stats, {u: (r, h) for u, r, h in triples})


def test_alignment_pairs_reproduce_ref_and_hyp():
    stats = score(word_results(HAND_MADE))
    for utt, (_, ref, hyp) in zip(stats.utterances, sorted(HAND_MADE)):
        assert [r for r, _ in utt.pairs if r is not None] == ref.split()
        assert [h for _, h in utt.pairs if h is not None] == hyp.split()
    u1 = stats.utterances[1]
    assert u1.pairs == (("A", "A"), ("B", "X"), ("C", "C"), ("D", None))


def test_empty_references_only():
    assert score([("x", [], [])]).error_rate == 0.0
    assert score([("x", [], ["A"])]).error_rate == float("inf")


@pytest.mark.parametrize("results,unit,match", [
    ([("u", ["A"], ["A"])], "phone", "unit must be one of"),
    ([], "word", "no utterances"),
    ([("u", "A B", ["A"])], "word", "utterance u: ref is a string"),
    ([("u", ["A"], ["A"]), ("u", ["B"], ["B"])], "word", "appears twice"),
    ([("u", ["A B"], ["A"])], "word", "not a word"),
    ([("u", ["A", ""], ["A"])], "word", "not a word"),
    ([("bad id", ["A"], ["A"])], "word", "without whitespace"),
])
def test_bad_input_is_one_clear_error(results, unit, match):
    with pytest.raises(ValueError, match=match):
        score(results, unit)

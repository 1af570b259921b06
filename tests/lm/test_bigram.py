"""The LODR token bigram against counts and probabilities worked out by hand, and its OpenFst
form read back the way sherpa-onnx reads it (lodr-fst.cc: cheapest path over explicit and
back-off arcs)."""

import math
from fractions import Fraction as Fr

import kaldifst
import numpy as np
import pytest

from asr_recipes.export.lodr_fst import write_lodr_fst
from asr_recipes.lm.bigram import TokenBigram, load_bigram

# V = 5: 0 blank (the sentence boundary), 1 <unk>, tokens 2, 3, 4 (4 never occurs)
SENTENCES = [[2, 3], [2], [3, 3, 2]]


def hand_probabilities():
    """Pairs: (0,2) x2, (0,3), (2,3), (2,0) x2, (3,0), (3,3), (3,2): 5 types seen once, 2 twice,
    so D = 5 / (5 + 2 * 2) = 5/9. Predictions n(k): end 3, token 2: 3, token 3: 3, 1 and 4: 0;
    N = 9, so P_uni = (n + 1) / 14 = [4, 1, 4, 4, 1] / 14.
    Context 0 (sentence start): n = 3, two types: alpha = 5/9 * 2/3 = 10/27;
    context 2: n = 3, two types: alpha = 10/27; context 3: n = 3, three types: alpha = 5/9."""
    uni = [Fr(4, 14), Fr(1, 14), Fr(4, 14), Fr(4, 14), Fr(1, 14)]
    D = Fr(5, 9)

    def row(alpha, seen, n):
        return [alpha * u + max(seen.get(k, 0) - D, Fr(0)) / n for k, u in enumerate(uni)]

    return {0: row(Fr(10, 27), {2: 2, 3: 1}, 3), 2: row(Fr(10, 27), {3: 1, 0: 2}, 3),
            3: row(Fr(5, 9), {0: 1, 3: 1, 2: 1}, 3), 1: uni, 4: uni}, D


def test_estimate_matches_hand_counts():
    bigram = TokenBigram.estimate(SENTENCES, vocab_size=5)
    probs, D = hand_probabilities()
    assert bigram.discount == pytest.approx(float(D))
    # a few entries spelled out: P(2 | start) = (2 - 5/9)/3 + 10/27 * 4/14 = 111/189
    assert probs[0][2] == Fr(111, 189) and probs[3][0] == Fr(58, 189) and probs[3][1] == Fr(5, 126)
    for context, row in probs.items():
        assert sum(row) == 1
        np.testing.assert_allclose(np.exp(bigram.log_probs(context)), [float(p) for p in row], rtol=1e-12)
    want = math.log(Fr(111, 189) * Fr(48, 189) * Fr(58, 189))  # P(2 | start) P(3 | 2) P(end | 3)
    assert bigram.sentence_log_prob([2, 3]) == pytest.approx(want, rel=1e-12)


def test_file_round_trip_and_vocabulary_check(tmp_path):
    bigram = TokenBigram.estimate(SENTENCES, vocab_size=5, discount=0.3)
    path = bigram.save(tmp_path / "bigram.json", tokens=["<blk>", "<unk>", "a", "b", "c"])
    again = load_bigram(path, ["<blk>", "<unk>", "a", "b", "c"])
    np.testing.assert_array_equal(again.log_probs(3), bigram.log_probs(3))
    with pytest.raises(ValueError, match="another vocabulary"):
        load_bigram(path, ["<blk>", "<unk>", "x", "b", "c"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a usable token bigram"):
        load_bigram(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="discount must be in"):
        TokenBigram.estimate(SENTENCES, vocab_size=5, discount=1.0)


def sherpa_step(fst, backoff_label, states: dict, label: int) -> dict:
    """sherpa-onnx's LodrStateCost::ForwardOneStep: from every (state, cost) and the states
    reached from it by back-off arcs, take the arc labelled `label`; keep the cheapest cost
    per next state."""
    def arc(state, lab):
        for a in kaldifst.ArcIterator(fst, state):
            if a.ilabel == lab:
                return a.nextstate, a.weight.value
        return None

    out = {}
    for s, cost in states.items():
        frontier = [(s, cost)]
        while (b := arc(frontier[-1][0], backoff_label)) is not None:
            frontier.append((b[0], frontier[-1][1] + b[1]))
        for state, c in frontier:
            if (a := arc(state, label)) is not None:
                out[a[0]] = min(out.get(a[0], math.inf), c + a[1])
    return out


def test_openfst_form_gives_the_bigram_probabilities_under_sherpas_reading(tmp_path):
    bigram = TokenBigram.estimate(SENTENCES, vocab_size=5)
    path = write_lodr_fst(bigram, tmp_path / "lodr.fst")
    fst = kaldifst.StdVectorFst.read(str(path))
    assert fst.start == 0 and fst.is_ilabel_sorted
    # the back-off label as sherpa-onnx finds it: the first arc (states in order) with olabel 0
    backoff = next(a.ilabel for s in range(fst.num_states) for a in kaldifst.ArcIterator(fst, s) if a.olabel == 0)
    assert backoff == 5
    probs, _ = hand_probabilities()
    for sentence in ([2, 3], [4, 4, 1], [3, 2, 2], [1]):
        states, previous, total = {0: 0.0}, 0, 0.0
        for k in sentence:
            nxt = sherpa_step(fst, backoff, states, k)
            score = -min(nxt.values()) + min(states.values())  # sherpa: Score() difference
            assert score == pytest.approx(math.log(probs[previous][k]), abs=1e-6), (sentence, k)
            states, previous, total = nxt, k, total + score
        best = min(states, key=states.get)
        total -= fst.final(best).value  # sherpa's FinalScore of a whole sentence
        want = sum(math.log(probs[c][k]) for c, k in zip([0, *sentence], [*sentence, 0]))
        assert total == pytest.approx(want, abs=1e-5)

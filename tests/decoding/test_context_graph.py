"""Hotword context graph against a written-out Aho-Corasick automaton and a brute-force
evaluation of the bonus definition (asr_recipes.decoding.context_graph's docstring)."""

import itertools
import math
import random

import pytest

from asr_recipes.decoding.context_graph import ROOT, ContextGraph

ALPHABET = "abcdehirs"
ID = {c: i + 2 for i, c in enumerate(ALPHABET)}  # ids 0, 1 are blank and <unk>
V = len(ALPHABET) + 2


def ids(text):
    return [ID[c] for c in text]


def graph(phrases):
    """phrases: {text: per-token score}."""
    return ContextGraph([(ids(p), s) for p, s in phrases.items()], V)


def node_names(g):
    """state -> the text of the trie path leading to it."""
    names, stack = {ROOT: ""}, [ROOT]
    letters = {i: c for c, i in ID.items()}
    while stack:
        s = stack.pop()
        for k, c in g.children[s].items():
            names[c] = names[s] + letters[k]
            stack.append(c)
    return names


def run(g, text):
    """(final state, running bonus) after emitting ``text`` from the root."""
    state, total = ROOT, 0.0
    for k in ids(text):
        state, bonus = g.step(state, k)
        total += bonus
    return state, total


# ---------------------------------------------------------------- brute-force reference
def w(phrases, x):
    return max(s for p, s in phrases.items() if p.startswith(x))


def pot(phrases, x):
    return sum(w(phrases, x[: i + 1]) for i in range(len(x)))


def completed(phrases, y):
    """B(y): every occurrence of every phrase pays pot(phrase)."""
    return sum(pot(phrases, p) for p in phrases for i in range(len(y)) if y.startswith(p, i))


def advanced(phrases, y):
    """P(y): pot of the partial match beyond the longest whole phrase it starts with."""
    u = next(y[i:] for i in range(len(y) + 1) if any(p.startswith(y[i:]) for p in phrases))
    v = max((p for p in phrases if u.startswith(p)), key=len, default="")
    return pot(phrases, u) - pot(phrases, v)


def test_fail_arcs_of_the_textbook_automaton():
    """Aho & Corasick (1975), Fig. 1: he, she, his, hers."""
    g = graph({"he": 1.0, "she": 1.0, "his": 1.0, "hers": 1.0})
    names = node_names(g)
    fail = {names[s]: names[g.fail[s]] for s in names if s != ROOT}
    assert fail == {"h": "", "he": "", "her": "", "hers": "s", "hi": "", "his": "s", "s": "", "sh": "h",
                    "she": "he"}
    # "ushers": she and he end at the 'e', hers at the final 's'
    assert completed({"he": 1, "she": 1, "his": 1, "hers": 1}, "ushers") == 2 + 3 + 4


def test_failed_partial_match_is_taken_back():
    g = graph({"abc": 2.0})
    assert run(g, "ab")[1] == pytest.approx(4.0)  # advanced while the match goes on
    state, total = run(g, "abd")
    assert total == pytest.approx(0.0) and state == ROOT  # broken: everything taken back
    state, total = run(g, "ab")
    assert total - g.pending(state) == pytest.approx(0.0)  # unfinished at the end: nothing
    state, total = run(g, "abc")
    assert total == pytest.approx(6.0) and g.pending(state) == 0.0  # completed: kept
    state, total = run(g, "abcab")
    assert total == pytest.approx(10.0) and total - g.pending(state) == pytest.approx(6.0)
    # a failed match that restarts a new one: "aab" -> the second 'a' begins again
    assert run(g, "aabc")[1] == pytest.approx(6.0)


def test_overlapping_and_nested_phrases_each_pay_once():
    phrases = {"ab": 1.0, "abcd": 1.0, "bc": 3.0}
    g = graph(phrases)
    state, total = run(g, "abcd")
    # ab (pot 2) + bc (pot 6) + abcd (pot 4) completed, nothing pending
    assert total == pytest.approx(12.0) and g.pending(state) == 0.0
    state, total = run(g, "abc")  # ab and bc done, abcd advanced by 'c' beyond ab
    assert total == pytest.approx(2.0 + 6.0 + 1.0) and g.pending(state) == pytest.approx(1.0)
    state, total = run(g, "abce")
    assert total == pytest.approx(8.0) and g.pending(state) == 0.0


def test_shared_prefix_takes_the_larger_score_regardless_of_order():
    a = graph({"abc": 1.0, "abd": 3.0})
    b = graph({"abd": 3.0, "abc": 1.0})
    for g in (a, b):
        assert run(g, "abc")[1] == pytest.approx(3 + 3 + 1)
        assert run(g, "abd")[1] == pytest.approx(9.0)
        assert run(g, "ab")[1] == pytest.approx(6.0)


@pytest.mark.parametrize("seed", range(6))
def test_bonus_equals_the_brute_force_definition(seed):
    rng = random.Random(seed)
    letters = "abc"
    phrases = {}
    while len(phrases) < rng.randint(2, 5):
        phrases["".join(rng.choice(letters) for _ in range(rng.randint(1, 4)))] = rng.choice([0.5, 1.0, 2.0])
    g = graph(phrases)
    for n in range(7):
        for y in map("".join, itertools.product(letters + "d", repeat=n)):
            state, total = run(g, y)
            want_b, want_p = completed(phrases, y), advanced(phrases, y)
            assert total == pytest.approx(want_b + want_p), (phrases, y)
            assert g.pending(state) == pytest.approx(want_p), (phrases, y)


def test_transitions_cover_the_vocabulary_and_bad_phrases_are_refused():
    g = graph({"ab": 1.0})
    nxt, bonus = g.transitions(ROOT)
    assert nxt.shape == bonus.shape == (V,)
    assert nxt[ID["a"]] != ROOT and all(nxt[k] == ROOT for k in range(V) if k != ID["a"])
    with pytest.raises(ValueError, match="no tokens"):
        ContextGraph([([], 1.0)], V)
    with pytest.raises(ValueError, match=">= 0"):
        ContextGraph([([2], -1.0)], V)
    with pytest.raises(ValueError, match="finite"):
        ContextGraph([([2], math.nan)], V)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ContextGraph([([V], 1.0)], V)

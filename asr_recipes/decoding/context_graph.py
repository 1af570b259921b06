"""Hotword biasing: an Aho-Corasick automaton over the token sequences of phrases.

A search carries one automaton state per hypothesis (an int; ``ROOT`` = 0 at the start)
and adds ``step(state, token)``'s bonus to the hypothesis' score for every token it emits.
What the bonus adds up to, for a token sequence y:

    w(x)   per-token bonus of a phrase prefix x: the largest score among the phrases that
           start with x (phrases sharing a prefix share its trie node)
    pot(x) = w(x[:1]) + w(x[:2]) + ... + w(x)          (0 for the empty prefix)
    B(y)   = sum of pot(p) over every occurrence of every phrase p in y (contiguous tokens;
             overlapping and nested occurrences each count: "NEW YORK" and "NEW YORK CITY"
             both pay out in "NEW YORK CITY")
    u      = the longest suffix of y that is a prefix of some phrase (the partial match)
    v      = the longest prefix of u that is a whole phrase (empty if none)
    P(y)   = pot(u) - pot(v): credit advanced for the part of the match not completed yet

During the search a hypothesis holds G(y) = B(y) + P(y): each token that extends a match
earns its bonus at once (so the hypothesis survives the beam long enough to complete the
phrase); a token that breaks the match takes the advance back (G drops to the new, shorter
partial match); completing a phrase turns the advance into B. ``pending(state)`` is P,
which a search subtracts from its final scores, so a finished hypothesis is rewarded only
with B(y): never for a phrase it did not complete.

This is icefall's / sherpa-onnx's ContextGraph in spirit (per-token bonus, fail arcs that
take back the advance, finalisation), with two differences, both written down above: a
completed phrase is paid once (icefall's strict mode pays it a second time while the match
continues; sherpa-onnx's non-strict mode returns to the root and so misses overlapping
and longer phrases), and the node bonuses are computed after all phrases are inserted (so
the order of the phrases does not matter).

Transitions are those of the automaton's DFA: ``goto(s, k)`` is the child of s for k, else
``goto(fail(s), k)``, else the root; they are built lazily, one (V,) row per state reached.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import numpy as np

ROOT = 0


class ContextGraph:
    """Aho-Corasick automaton over ``phrases``: (token ids, per-token score) pairs.

    Token ids must be in [0, vocab_size); scores finite and >= 0. Searches must not pass
    blank or ``<unk>`` (they emit no token); phrases should not contain them.
    """

    def __init__(self, phrases: Sequence[tuple[Sequence[int], float]], vocab_size: int):
        self.vocab_size = vocab_size
        children: list[dict[int, int]] = [{}]
        weight = [0.0]  # w(node): max score of the phrases through it
        is_end = [False]
        parent = [ROOT]
        for tokens, score in phrases:
            tokens = [int(k) for k in tokens]
            if not tokens:
                raise ValueError("a hotword phrase has no tokens")
            if not math.isfinite(score) or score < 0:
                raise ValueError(f"hotword score must be a finite number >= 0, got {score!r}")
            if any(not 0 <= k < vocab_size for k in tokens):
                raise ValueError(f"hotword token ids {tokens} are outside the vocabulary [0, {vocab_size})")
            node = ROOT
            for k in tokens:
                if k not in children[node]:
                    children[node][k] = len(children)
                    children.append({})
                    weight.append(score)
                    is_end.append(False)
                    parent.append(node)
                node = children[node][k]
                weight[node] = max(weight[node], score)
            is_end[node] = True
        n = len(children)
        self.children = children
        self.fail = [ROOT] * n
        self.pot = [0.0] * n  # pot(node)
        self.done = [0.0] * n  # pot of the deepest whole phrase among node's prefixes (itself included)
        self.out = [0.0] * n  # sum of pot(p) over the phrases that end here (suffixes of node)
        queue = deque([ROOT])
        while queue:  # breadth first: a node's fail target and parent are done before it
            s = queue.popleft()
            for k, c in children[s].items():
                self.pot[c] = self.pot[s] + weight[c]
                self.done[c] = self.pot[c] if is_end[c] else self.done[s]
                self.fail[c] = ROOT if s == ROOT else self._goto(self.fail[s], k)
                self.out[c] = (self.pot[c] if is_end[c] else 0.0) + self.out[self.fail[c]]
                queue.append(c)
        self._out, self._pending = np.asarray(self.out), np.asarray(self.pot) - np.asarray(self.done)
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_states(self) -> int:
        return len(self.children)

    def _goto(self, s: int, k: int) -> int:
        """The DFA transition by following fail arcs (used while building)."""
        while k not in self.children[s] and s != ROOT:
            s = self.fail[s]
        return self.children[s].get(k, ROOT)

    def pending(self, state: int) -> float:
        """P: the bonus advanced for the unfinished part of the current match."""
        return self.pot[state] - self.done[state]

    def transitions(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """(V,) int64 next states and (V,) float64 bonuses of every token from ``state``:
        bonus = B gained + P(next) - P(state) (see the module docstring)."""
        row = self._rows.get(state)
        if row is None:
            if state == ROOT:
                nxt = np.zeros(self.vocab_size, dtype=np.int64)
            else:
                nxt = self.transitions(self.fail[state])[0].copy()
            for k, c in self.children[state].items():
                nxt[k] = c
            row = (nxt, self._out[nxt] + self._pending[nxt] - self._pending[state])
            self._rows[state] = row
        return row

    def step(self, state: int, token: int) -> tuple[int, float]:
        """(next state, bonus) for emitting ``token`` in ``state``."""
        nxt, bonus = self.transitions(state)
        return int(nxt[token]), float(bonus[token])

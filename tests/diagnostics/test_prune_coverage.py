"""The prune-range diagnostic against brute force on a tiny real model.

References are per utterance, from the joiner's log-softmax on every (t, s) pair and the
node-by-node DP of tests/rnnt/brute_force.py:
  occupation(t, s) = P(the alignment leaves node (t, s)) = 1 - P(no path through it)
                   = 1 - exp(LL(lattice without (t, s)) - LL);
  gap = LL - LL(only the band's nodes); best path by enumerating every path.
"""

import math

import numpy as np
import pytest
import torch

from asr_recipes.diagnostics.prune_coverage import PruneStats, measure_batch
from asr_recipes.models.build import build_transducer
from asr_recipes.models.lattice import LatticeConfig
from tests.rnnt.brute_force import transducer_log_likelihood

MODEL = dict(d_model=32, num_heads=2, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.0,
             subsampling_channels=8, conv_norm="batch", decoder_dim=32, context_size=2, joiner_dim=32)
V = 8


def tiny_batch(last_labels=3):
    torch.manual_seed(0)
    model = build_transducer(MODEL, V).eval()
    # Encoder frames T' = 6, 5, 2: with 3 labels utterance 2 has more labels than frames, so
    # s_range 2 is widened for the batch (to ceil(3 / 2) + 1 = 3), as in training (a modified
    # lattice, one symbol per frame, needs last_labels <= 2).
    feature_lens = torch.tensor([30, 26, 14])
    features = torch.randn(3, 30, 80)
    token_lens = torch.tensor([5, 0, last_labels])
    tokens = torch.randint(1, V, (3, 5))
    return model, features, feature_lens, tokens, token_lens


def best_left_nodes(lp, symbols, T, modified=False):
    """Nodes (t, s) left by the highest-scoring path, by enumerating all paths."""
    S = len(symbols)
    best = (-math.inf, None)

    def walk(t, s, score, left):
        nonlocal best
        if (t, s) == (T, S):
            if score > best[0]:
                best = (score, left)
            return
        if t < T:
            walk(t + 1, s, score + lp[t, s, 0], left + [(t, s)])
            if s < S:
                walk(t + modified, s + 1, score + lp[t, s, symbols[s]], left + [(t, s)])

    walk(0, 0, 0.0, [])
    return set(best[1])


@pytest.mark.parametrize("settings", [LatticeConfig(), LatticeConfig(lm_scale=0.0, delay_penalty=0.3),
                                      LatticeConfig(rnnt_type="modified"),
                                      LatticeConfig(delay_penalty=0.3, rnnt_type="modified")])
def test_measurements_equal_brute_force(settings):
    modified = settings.rnnt_type == "modified"
    model, features, feature_lens, tokens, token_lens = tiny_batch(2 if modified else 3)
    paths_leave = (lambda S, T: T) if modified else (lambda S, T: S + T)  # nodes each path leaves
    s_ranges = [2, 3, 4, 6]
    stats, lattices = measure_batch(model, features, feature_lens, tokens, token_lens, s_ranges, settings,
                                    cut_ids=["a", "b", "c"], keep_lattices=True)
    with torch.no_grad():
        encoder_out, encoder_lens = model.encode(features, feature_lens)
        sos_y = torch.nn.functional.pad(tokens, (1, 0), value=0)  # blank-prefixed decoder input
        decoder_out = model.decoder(sos_y)
        logits = model.joiner(encoder_out.unsqueeze(2), decoder_out.unsqueeze(1))  # (N, T', U+1, V)
        log_probs = torch.log_softmax(logits.double(), dim=-1).numpy()
    assert encoder_lens.tolist() == [6, 5, 2]

    expected = {s_range: dict(inside=0.0, total=0.0, gap=0.0, escapes=0) for s_range in s_ranges}
    for n, lattice in enumerate(lattices):
        S, T = int(token_lens[n]), int(encoder_lens[n])
        symbols = tokens[n, :S].tolist()
        lp = log_probs[n].copy()
        if settings.delay_penalty:  # the penalty the losses add to each symbol arc on frame t
            for t in range(lp.shape[0]):
                lp[t, :, 1:] += settings.delay_penalty * ((T - 1) / 2 - t)
        ll = transducer_log_likelihood(lp, symbols, T, 0, settings.rnnt_type)
        occupation = np.zeros((S + 1, T))
        for t in range(T):
            for s in range(S + 1):
                keep = np.ones((lp.shape[0], lp.shape[1]), dtype=bool)
                keep[t, s] = False
                without = transducer_log_likelihood(lp, symbols, T, 0, settings.rnnt_type, keep=keep)
                occupation[s, t] = 1.0 - math.exp(without - ll)
        assert occupation.sum() == pytest.approx(paths_leave(S, T), abs=1e-6)
        np.testing.assert_allclose(lattice.occupation, occupation, atol=2e-5)
        assert lattice.cut_id == "abc"[n]
        best = best_left_nodes(lp, symbols, T, modified)
        assert set(zip(*np.nonzero(lattice.best_path.T))) == best
        for s_range in s_ranges:
            ranges = lattice.ranges[s_range]  # (T, R)
            band = np.zeros((lp.shape[0], lp.shape[1]), dtype=bool)
            for t in range(T):
                band[t, ranges[t]] = True
            inside = sum(occupation[s, t] for t in range(T) for s in range(S + 1) if band[t, s])
            gap = ll - transducer_log_likelihood(lp, symbols, T, 0, settings.rnnt_type, keep=band)
            assert lattice.coverage[s_range] == pytest.approx(inside / paths_leave(S, T), abs=1e-5)
            assert lattice.gap[s_range] == pytest.approx(gap, abs=2e-4)
            expected[s_range]["inside"] += inside
            expected[s_range]["total"] += paths_leave(S, T)
            expected[s_range]["gap"] += gap
            expected[s_range]["escapes"] += any(not band[t, s] for t, s in best)

    for s_range in s_ranges:
        got, ref = stats[s_range], expected[s_range]
        assert got.utterances == 3 and got.frames == 13 and got.labels == 7 + (not modified) and got.batches == 1
        assert got.mass_inside == pytest.approx(ref["inside"], abs=1e-4)
        assert got.mass_total == pytest.approx(ref["total"], abs=1e-4)
        assert got.gap == pytest.approx(ref["gap"], abs=5e-4)
        assert got.escapes == ref["escapes"]
        assert got.widened_batches == (1 if s_range == 2 and not modified else 0)
    # The band is training's: a 2-wide band on a random model loses mass of the regular lattice (a
    # modified one, 5 labels in 6 frames, has few nodes off the diagonal); a 6-wide one keeps it all.
    assert (modified or stats[2].coverage < 0.99) and stats[6].coverage == pytest.approx(1.0, abs=1e-6)


def test_band_is_the_one_training_prunes_with():
    # Transducer.forward's pruned loss, with the same settings, equals the brute-force loss of
    # the full joiner restricted to the band the diagnostic reports.
    model, features, feature_lens, tokens, token_lens = tiny_batch()
    _, lattices = measure_batch(model, features, feature_lens, tokens, token_lens, [3], keep_lattices=True)
    with torch.no_grad():
        _, pruned = model(features, feature_lens, tokens, token_lens, LatticeConfig(prune_range=3), reduction="none")
        encoder_out, encoder_lens = model.encode(features, feature_lens)
        decoder_out = model.decoder(torch.nn.functional.pad(tokens, (1, 0), value=0))
        logits = model.joiner(encoder_out.unsqueeze(2), decoder_out.unsqueeze(1))
        log_probs = torch.log_softmax(logits.double(), dim=-1).numpy()
    for n, lattice in enumerate(lattices):
        S, T = int(token_lens[n]), int(encoder_lens[n])
        band = np.zeros(log_probs.shape[1:3], dtype=bool)
        for t in range(T):
            band[t, lattice.ranges[3][t]] = True
        ref = -transducer_log_likelihood(log_probs[n], tokens[n, :S].tolist(), T, 0, keep=band)
        assert float(pruned[n]) == pytest.approx(ref, rel=1e-5)


def test_full_lattice_is_the_same_in_chunks_of_one_utterance():
    model, features, feature_lens, tokens, token_lens = tiny_batch()
    whole, _ = measure_batch(model, features, feature_lens, tokens, token_lens, [2, 5])
    chunked, _ = measure_batch(model, features, feature_lens, tokens, token_lens, [2, 5], max_elements=1)
    for s_range in (2, 5):
        assert whole[s_range].as_list() == pytest.approx(chunked[s_range].as_list(), abs=1e-5)


def test_stats_add_and_round_trip_through_a_list():
    a = PruneStats(utterances=2, frames=10.0, labels=4.0, mass_inside=13.0, mass_total=14.0, gap=0.5, full_loss=3.0,
                   escapes=1, widened_batches=0, batches=1)
    b = PruneStats(utterances=3, frames=20.0, labels=6.0, mass_inside=25.0, mass_total=26.0, gap=0.25, full_loss=4.0,
                   escapes=0, widened_batches=1, batches=1)
    a.add(b)
    assert a == PruneStats(5, 30.0, 10.0, 38.0, 40.0, 0.75, 7.0, 1, 1, 2)
    assert a.coverage == 38.0 / 40.0 and a.gap_per_frame == 0.75 / 30.0
    again = PruneStats.from_list(a.as_list())
    assert again == a and isinstance(again.escapes, int)

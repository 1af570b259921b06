"""best_path (Viterbi) against brute-force enumeration of every path of small lattices."""

import math

import pytest
import torch

from asr_recipes.rnnt.viterbi import best_path


def all_paths(px, py, S, T, modified):
    """Every path from (0, 0) to (S, T) of one lattice as (score, visited nodes), by recursion."""
    paths = []

    def walk(s, t, score, nodes):
        if (s, t) == (S, T):
            paths.append((score, nodes))
            return
        if t < T:  # blank: next frame
            walk(s, t + 1, score + float(py[s, t]), nodes + [(s, t + 1)])
        if s < S:
            if modified and t < T:  # symbol and next frame
                walk(s + 1, t + 1, score + float(px[s, t]), nodes + [(s + 1, t + 1)])
            elif not modified:  # symbol, same frame (px[s, T] is -inf in a real lattice)
                walk(s + 1, t, score + float(px[s, t]), nodes + [(s + 1, t)])

    walk(0, 0, 0.0, [(0, 0)])
    return paths


@pytest.mark.parametrize("modified", [False, True])
def test_best_path_is_the_best_of_all_enumerated_paths(modified):
    gen = torch.Generator().manual_seed(0)
    B, S, T = 4, 4, 5
    for trial in range(15):
        px = torch.randn(B, S, T if modified else T + 1, generator=gen, dtype=torch.float64) * 2
        py = torch.randn(B, S + 1, T, generator=gen, dtype=torch.float64) * 2
        t_end = torch.randint(0, T + 1, (B,), generator=gen)
        t_end[0] = T
        s_end = torch.randint(0, S + 1, (B,), generator=gen)
        if modified:
            s_end = torch.minimum(s_end, t_end)
        else:
            px[torch.arange(B), :, t_end] = -math.inf  # no symbol on the one-past-last frame
        boundary = torch.stack([torch.zeros_like(t_end), torch.zeros_like(t_end), s_end, t_end], dim=1)
        scores, on_path = best_path(px, py, boundary)
        assert on_path.shape == (B, S + 1, T + 1)
        for b in range(B):
            paths = [p for p in all_paths(px[b], py[b], int(s_end[b]), int(t_end[b]), modified) if p[0] > -math.inf]
            if not paths:  # e.g. labels but no frame to emit them on
                assert scores[b] == -math.inf and not on_path[b].any()
                continue
            best_score, best_nodes = max(paths, key=lambda p: p[0])
            assert abs(float(scores[b]) - best_score) < 1e-12, (trial, b)
            assert set(map(tuple, on_path[b].nonzero().tolist())) == set(best_nodes), (trial, b)


def test_no_path_gives_minus_inf_and_no_nodes():
    px = torch.full((1, 2, 4), -math.inf)  # no symbol arc anywhere
    py = torch.zeros(1, 3, 3)
    scores, on_path = best_path(px, py, torch.tensor([[0, 0, 2, 3]]))
    assert scores[0] == -math.inf and not on_path.any()


def test_paths_must_start_at_the_origin():
    with pytest.raises(ValueError, match="start at the origin"):
        best_path(torch.zeros(1, 2, 4), torch.zeros(1, 3, 3), torch.tensor([[1, 0, 2, 3]]))

"""Prune ranges, pruned joiner inputs and the pruned loss, against brute force and rnnt_loss."""

import numpy as np
import pytest
import torch

import asr_recipes.rnnt as k2
from tests.rnnt.brute_force import log_softmax, transducer_log_likelihood


def lengths_and_boundary(gen, B, T, S, modified):
    t_len = torch.randint(1, T + 1, (B,), generator=gen)
    t_len[0] = T
    s_len = torch.randint(0, S + 1, (B,), generator=gen)
    s_len[0] = S
    s_len = torch.minimum(s_len, t_len) if modified else s_len
    zeros = torch.zeros(B, dtype=torch.int64)
    return torch.stack([zeros, zeros, s_len, t_len], dim=1)


def simple_occupations(gen, B, T, S, C, boundary, rnnt_type, peaky):
    am = torch.randn(B, T, C, generator=gen) * peaky
    lm = torch.randn(B, S + 1, C, generator=gen) * peaky
    symbols = torch.randint(1, C, (B, S), generator=gen)
    _, (px_grad, py_grad) = k2.rnnt_loss_smoothed(
        lm, am, symbols, 0, 0.25, 0.0, boundary, rnnt_type=rnnt_type, return_grad=True
    )
    return am, lm, symbols, px_grad, py_grad


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_prune_ranges_satisfy_constraints_on_many_random_lattices(rnnt_type):
    gen = torch.Generator().manual_seed(0)
    modified = rnnt_type != "regular"
    for trial in range(60):
        B = int(torch.randint(1, 6, (1,), generator=gen))
        S = int(torch.randint(0, 25, (1,), generator=gen))
        T = int(torch.randint(max(S, 1), 60, (1,), generator=gen))
        s_range = int(torch.randint(1 if modified else 2, 8, (1,), generator=gen))
        boundary = lengths_and_boundary(gen, B, T, S, modified)
        if not modified:  # windows must be able to climb the transcript
            boundary[:, 2] = torch.minimum(boundary[:, 2], boundary[:, 3] * (s_range - 1))
        peaky = float(torch.rand(1, generator=gen)) * 6
        *_, px_grad, py_grad = simple_occupations(gen, B, T, S, 7, boundary, rnnt_type, peaky)
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
        R = min(s_range, S + 1)
        assert ranges.shape == (B, T, R) and ranges.dtype == torch.int64
        assert (ranges >= 0).all() and (ranges <= S).all()
        assert (ranges[:, :, 1:] - ranges[:, :, :-1] == 1).all()  # contiguous windows
        start = ranges[:, :, 0]
        max_jump = 1 if modified else R - 1
        for b in range(B):
            S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
            assert start[b, 0] == 0
            jumps = start[b, 1:] - start[b, :-1]
            assert (jumps >= 0).all() and (jumps <= max_jump).all(), (start[b], max_jump)
            last = ranges[b, T_b - 1]
            assert int(last[0]) <= S_b <= int(last[-1]), (trial, b, last, S_b)


def test_prune_ranges_follow_a_sharp_alignment():
    # Occupations concentrated on one alignment: the windows must contain it.
    B, S, T = 1, 6, 12
    emit_frame = [1, 2, 2, 5, 8, 10]  # symbol s is emitted on this frame
    px_grad = torch.zeros(B, S, T + 1)
    py_grad = torch.zeros(B, S + 1, T)
    s = 0
    for t in range(T):
        while s < S and emit_frame[s] == t:
            px_grad[0, s, t] = 1
            s += 1
        py_grad[0, s, t] = 1
    boundary = torch.tensor([[0, 0, S, T]])
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
    s = 0
    for t in range(T):
        visited = [s]
        while s < S and emit_frame[s] == t:
            s += 1
            visited.append(s)
        for v in visited:
            assert v in ranges[0, t].tolist(), (t, visited, ranges[0, t])


def test_do_rnnt_pruning_gathers_the_kept_pairs():
    gen = torch.Generator().manual_seed(1)
    B, T, S, D = 2, 5, 4, 3
    am, lm = torch.randn(B, T, D, generator=gen), torch.randn(B, S + 1, D, generator=gen)
    ranges = torch.tensor([[[0, 1], [0, 1], [1, 2], [2, 3], [3, 4]], [[0, 1], [1, 2], [1, 2], [2, 3], [2, 3]]])
    am_p, lm_p = k2.do_rnnt_pruning(am, lm, ranges)
    assert am_p.shape == (B, T, 2, D) and lm_p.shape == (B, T, 2, D)
    for b in range(B):
        for t in range(T):
            for k in range(2):
                assert torch.equal(am_p[b, t, k], am[b, t])
                assert torch.equal(lm_p[b, t, k], lm[b, ranges[b, t, k]])


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_pruned_loss_with_full_range_equals_full_loss(rnnt_type):
    gen = torch.Generator().manual_seed(2)
    B, T, S, C, J = 4, 16, 6, 9, 5
    boundary = lengths_and_boundary(gen, B, T, S, rnnt_type != "regular")
    am, lm, symbols, px_grad, py_grad = simple_occupations(gen, B, T, S, C, boundary, rnnt_type, 1.0)
    enc, dec = torch.randn(B, T, J, generator=gen), torch.randn(B, S + 1, J, generator=gen)
    out = torch.nn.Linear(J, C)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, S + 3)
    assert ranges.shape[2] == S + 1
    enc_p, dec_p = k2.do_rnnt_pruning(enc, dec, ranges)
    pruned = k2.rnnt_loss_pruned(out(torch.tanh(enc_p + dec_p)), symbols, ranges, 0, boundary, rnnt_type, reduction="none")
    full_logits = out(torch.tanh(enc[:, :, None] + dec[:, None]))
    full = k2.rnnt_loss(full_logits, symbols, 0, boundary, rnnt_type, reduction="none")
    torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_pruned_loss_equals_brute_force_over_the_pruned_lattice(rnnt_type):
    gen = torch.Generator().manual_seed(3)
    for trial in range(6):
        B, T, S, C = 3, 10, 6, 7
        s_range = 2 + trial % 3
        boundary = lengths_and_boundary(gen, B, T, S, rnnt_type != "regular")
        if rnnt_type == "regular":
            boundary[:, 2] = torch.minimum(boundary[:, 2], boundary[:, 3] * (s_range - 1))
        _, _, symbols, px_grad, py_grad = simple_occupations(gen, B, T, S, C, boundary, rnnt_type, 2.0)
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
        full_logits = torch.randn(B, T, S + 1, C, generator=gen, dtype=torch.float64)
        index = ranges.unsqueeze(-1).expand(B, T, s_range, C)
        pruned_logits = torch.gather(full_logits, 2, index)  # (B, T, s_range, C)
        loss = k2.rnnt_loss_pruned(pruned_logits, symbols, ranges, 0, boundary, rnnt_type, delay_penalty=0.2, reduction="none")
        lp = log_softmax(full_logits.numpy())
        for b in range(B):
            S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
            keep = np.zeros((T, S + 1), dtype=bool)
            for t in range(T):
                keep[t, ranges[b, t].numpy()] = True
            ref = -transducer_log_likelihood(lp[b], symbols[b, :S_b].tolist(), T_b, 0, rnnt_type, keep, delay_penalty=0.2)
            if np.isinf(ref):
                assert torch.isinf(loss[b])
            else:
                assert abs(float(loss[b]) - ref) <= 1e-7 * max(1.0, abs(ref)), (trial, b, float(loss[b]), ref)


def test_gradcheck_pruned_loss_float64():
    gen = torch.Generator().manual_seed(4)
    B, T, S, C, R = 2, 6, 4, 5, 3
    boundary = torch.tensor([[0, 0, 4, 6], [0, 0, 2, 4]])
    symbols = torch.randint(1, C, (B, S), generator=gen)
    starts = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0]])
    ranges = starts.unsqueeze(-1) + torch.arange(R)
    logits = torch.randn(B, T, R, C, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: k2.rnnt_loss_pruned(x, symbols, ranges, 0, boundary, reduction="none"), (logits,)
    )


def test_icefall_sequence_backpropagates_finite_gradients():
    """The call sequence of icefall's pruned_transducer_stateless2 model.py, keyword for keyword."""
    gen = torch.Generator().manual_seed(5)
    N, T, U, V, J, D = 4, 40, 12, 30, 16, 24
    encoder_out = torch.randn(N, T, D, generator=gen, requires_grad=True)
    decoder_out = torch.randn(N, U + 1, D, generator=gen, requires_grad=True)
    simple_am_proj, simple_lm_proj = torch.nn.Linear(D, V), torch.nn.Linear(D, V)
    encoder_proj, decoder_proj, output_linear = torch.nn.Linear(D, J), torch.nn.Linear(D, J), torch.nn.Linear(J, V)
    y_lens = torch.tensor([12, 3, 0, 7])
    x_lens = torch.tensor([40, 20, 8, 33])
    y_padded = torch.randint(1, V, (N, U), generator=gen)
    boundary = torch.zeros((N, 4), dtype=torch.int64)
    boundary[:, 2] = y_lens
    boundary[:, 3] = x_lens

    lm = simple_lm_proj(decoder_out)
    am = simple_am_proj(encoder_out)
    simple_loss, (px_grad, py_grad) = k2.rnnt_loss_smoothed(
        lm=lm.float(), am=am.float(), symbols=y_padded, termination_symbol=0, lm_only_scale=0.25,
        am_only_scale=0.0, boundary=boundary, reduction="sum", return_grad=True,
    )
    ranges = k2.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=5)
    am_pruned, lm_pruned = k2.do_rnnt_pruning(am=encoder_proj(encoder_out), lm=decoder_proj(decoder_out), ranges=ranges)
    logits = output_linear(torch.tanh(am_pruned + lm_pruned))
    pruned_loss = k2.rnnt_loss_pruned(
        logits=logits.float(), symbols=y_padded, ranges=ranges, termination_symbol=0, boundary=boundary, reduction="sum",
    )
    (0.5 * simple_loss + pruned_loss).backward()
    assert torch.isfinite(simple_loss) and torch.isfinite(pruned_loss)
    for p in [encoder_out, decoder_out, output_linear.weight, simple_lm_proj.weight, encoder_proj.weight]:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # The padded utterance (no labels) still gets gradient only through its real frames.
    assert encoder_out.grad[2, 8:].abs().max() == 0
    assert encoder_out.grad[2, :8].abs().max() > 0


def test_do_rnnt_pruning_gradient_matches_dense_gather():
    gen = torch.Generator().manual_seed(6)
    B, T, S, D, R = 3, 7, 5, 4, 3
    lm = torch.randn(B, S + 1, D, generator=gen, dtype=torch.float64, requires_grad=True)
    am = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    ranges = torch.randint(0, S + 2 - R, (B, T, 1), generator=gen) + torch.arange(R)
    upstream = torch.randn(B, T, R, D, generator=gen, dtype=torch.float64)
    _, lm_pruned = k2.do_rnnt_pruning(am, lm, ranges)
    (grad,) = torch.autograd.grad(lm_pruned, lm, upstream)
    dense = torch.gather(lm.unsqueeze(1).expand(B, T, S + 1, D), 2, ranges.unsqueeze(-1).expand(B, T, R, D))
    (ref,) = torch.autograd.grad(dense, lm, upstream)
    torch.testing.assert_close(grad, ref)
    assert torch.autograd.gradcheck(lambda x: k2.do_rnnt_pruning(am, x, ranges)[1], (lm,))


def test_too_narrow_s_range_is_widened_so_short_utterances_keep_a_finite_loss(caplog):
    """k2's rule: regular windows climb s_range - 1 labels per frame, so S_b labels in T_b frames
    need s_range >= ceil(S_b / T_b) + 1; k2 widens the whole batch to that and warns."""
    gen = torch.Generator().manual_seed(7)
    C = 6
    for T in (1, 2, 3):
        for S in range(0, 10):
            needed = (S + T - 1) // T + 1  # ceil(S / T) + 1, written out independently of the code
            for s_range in range(2, S + 2):
                boundary = torch.tensor([[0, 0, S, T]])
                symbols = torch.randint(1, C, (1, S), generator=gen)
                full_logits = torch.randn(1, T, S + 1, C, generator=gen, dtype=torch.float64)
                *_, px_grad, py_grad = simple_occupations(gen, 1, T, S, C, boundary, "regular", 2.0)
                caplog.clear()
                with caplog.at_level("WARNING", logger="asr_recipes.rnnt.pruning"):
                    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
                width = min(max(s_range, needed), S + 1)
                assert ranges.shape == (1, T, width), (T, S, s_range, ranges.shape)
                warnings = [r for r in caplog.records if r.levelname == "WARNING"]
                if s_range < needed:
                    assert len(warnings) == 1 and f"s_range={needed}" in warnings[0].getMessage()
                else:
                    assert not warnings
                pruned_logits = torch.gather(full_logits, 2, ranges.unsqueeze(-1).expand(1, T, width, C))
                loss = k2.rnnt_loss_pruned(pruned_logits, symbols, ranges, 0, boundary, reduction="none")
                assert torch.isfinite(loss).all(), (T, S, s_range, ranges)
                keep = np.zeros((T, S + 1), dtype=bool)
                for t in range(T):
                    keep[t, ranges[0, t].numpy()] = True
                lp = log_softmax(full_logits[0].numpy())
                ref = -transducer_log_likelihood(lp, symbols[0].tolist(), T, 0, keep=keep)
                assert abs(float(loss[0]) - ref) <= 1e-9 * max(1.0, abs(ref))
                if width == S + 1:  # the widened windows cover the whole lattice: nothing is pruned
                    full = -transducer_log_likelihood(lp, symbols[0].tolist(), T, 0)
                    assert abs(float(loss[0]) - full) <= 1e-9 * max(1.0, abs(full))


def test_widening_keeps_a_summed_batch_finite(caplog):
    # One utterance with 9 labels in 2 frames among ordinary ones: s_range 3 would leave it (and
    # a reduction="sum" of the batch) infinite; the batch is widened to ceil(9 / 2) + 1 = 6.
    gen = torch.Generator().manual_seed(8)
    B, T, S, C = 3, 12, 9, 7
    boundary = torch.tensor([[0, 0, 9, 2], [0, 0, 5, 12], [0, 0, 0, 7]])
    am, lm, symbols, px_grad, py_grad = simple_occupations(gen, B, T, S, C, boundary, "regular", 1.0)
    with caplog.at_level("WARNING", logger="asr_recipes.rnnt.pruning"):
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
    assert ranges.shape == (B, T, 6)
    assert len(caplog.records) == 1 and "utterance 0" in caplog.records[0].getMessage()
    logits = torch.randn(B, T, 6, C, generator=gen, requires_grad=True)
    loss = k2.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, reduction="sum")
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_modified_ranges_are_never_widened(caplog):
    # Modified lattices climb one label per frame whatever the width, and need T_b >= S_b anyway.
    gen = torch.Generator().manual_seed(9)
    boundary = torch.tensor([[0, 0, 4, 4]])
    *_, px_grad, py_grad = simple_occupations(gen, 1, 4, 4, 5, boundary, "modified", 1.0)
    with caplog.at_level("WARNING", logger="asr_recipes.rnnt.pruning"):
        assert k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 1).shape == (1, 4, 1)
    assert not caplog.records


def test_deprecated_ranges_maximise_windowed_node_occupancy():
    # Reference: per frame, the first window start with the largest summed node occupancy,
    # found by looping over starts; then the published rules (last frame, monotone, jumps).
    gen = torch.Generator().manual_seed(10)
    for rnnt_type in ("regular", "modified"):
        for _ in range(5):
            B, T, S, s_range = 2, 15, 8, 3
            boundary = torch.tensor([[0, 0, 8, 15], [0, 0, 5, 11]])
            *_, px_grad, py_grad = simple_occupations(gen, B, T, S, 6, boundary, rnnt_type, 1.5)
            ranges = k2.get_rnnt_prune_ranges_deprecated(px_grad, py_grad, boundary, s_range)
            assert ranges.shape == (B, T, s_range)
            max_jump = s_range - 1 if rnnt_type == "regular" else 1
            for b in range(B):
                S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
                starts = []
                for t in range(T):
                    if t >= T_b - 1:
                        starts.append(max(0, S_b - s_range + 1))
                        continue
                    occ = [float(py_grad[b, s, t]) + (float(px_grad[b, s, t]) if s < S else 0.0) for s in range(S + 1)]
                    sums = [sum(occ[p:p + s_range]) for p in range(S + 2 - s_range)]
                    starts.append(sums.index(max(sums)))
                # repairs: non-decreasing (lower earlier starts), reachable from the origin
                # (start <= max_jump * t), then jumps <= max_jump (raise earlier starts)
                for t in range(T - 2, -1, -1):
                    starts[t] = min(starts[t], starts[t + 1])
                for t in range(T):
                    starts[t] = min(starts[t], max_jump * t)
                for t in range(T - 1, 0, -1):
                    starts[t - 1] = max(starts[t - 1], starts[t] - max_jump)
                assert ranges[b, :, 0].tolist() == starts, (rnnt_type, b)

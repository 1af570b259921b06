"""The public API against k2's and fast_rnnt's, function by function.

The reference signatures below are transcribed by hand from the upstream sources:
  k2        k2/python/k2/rnnt_loss.py, mutual_information.py  (k2-fsa/k2 a741ae88, 2025-07-14)
  fast_rnnt fast_rnnt/python/fast_rnnt/rnnt_loss.py, ...     (k2-fsa/fast_rnnt 83e4637f, 2023-08-25)
Each entry is (parameter, default) in declaration order; REQUIRED marks no default.
"""

import inspect

import pytest
import torch

import asr_recipes.rnnt as k2

REQUIRED = inspect.Parameter.empty

K2 = {
    "mutual_information_recursion": [("px", REQUIRED), ("py", REQUIRED), ("boundary", None), ("return_grad", False)],
    "joint_mutual_information_recursion": [("px", REQUIRED), ("py", REQUIRED), ("boundary", None)],
    "fix_for_boundary": [("px", REQUIRED), ("boundary", None)],
    "get_rnnt_logprobs": [("lm", REQUIRED), ("am", REQUIRED), ("symbols", REQUIRED), ("termination_symbol", REQUIRED),
                          ("rnnt_type", "regular"), ("boundary", None)],
    "rnnt_loss_simple": [("lm", REQUIRED), ("am", REQUIRED), ("symbols", REQUIRED), ("termination_symbol", REQUIRED),
                         ("boundary", None), ("rnnt_type", "regular"), ("delay_penalty", 0.0), ("reduction", "mean"),
                         ("return_grad", False)],
    "get_rnnt_logprobs_joint": [("logits", REQUIRED), ("symbols", REQUIRED), ("termination_symbol", REQUIRED),
                                ("rnnt_type", "regular"), ("boundary", None)],
    "rnnt_loss": [("logits", REQUIRED), ("symbols", REQUIRED), ("termination_symbol", REQUIRED), ("boundary", None),
                  ("rnnt_type", "regular"), ("delay_penalty", 0.0), ("reduction", "mean")],
    "get_rnnt_prune_ranges": [("px_grad", REQUIRED), ("py_grad", REQUIRED), ("boundary", REQUIRED),
                              ("s_range", REQUIRED)],
    "get_rnnt_prune_ranges_deprecated": [("px_grad", REQUIRED), ("py_grad", REQUIRED), ("boundary", REQUIRED),
                                         ("s_range", REQUIRED)],
    "do_rnnt_pruning": [("am", REQUIRED), ("lm", REQUIRED), ("ranges", REQUIRED)],
    "get_hat_logprobs_pruned": [("logits", REQUIRED), ("symbols", REQUIRED), ("ranges", REQUIRED),
                                ("termination_symbol", REQUIRED), ("boundary", REQUIRED), ("rnnt_type", "regular")],
    "get_rnnt_logprobs_pruned": [("logits", REQUIRED), ("symbols", REQUIRED), ("ranges", REQUIRED),
                                 ("termination_symbol", REQUIRED), ("boundary", REQUIRED), ("rnnt_type", "regular")],
    "rnnt_loss_pruned": [("logits", REQUIRED), ("symbols", REQUIRED), ("ranges", REQUIRED),
                         ("termination_symbol", REQUIRED), ("boundary", None), ("rnnt_type", "regular"),
                         ("delay_penalty", 0.0), ("reduction", "mean"), ("use_hat_loss", False)],
    "get_rnnt_logprobs_smoothed": [("lm", REQUIRED), ("am", REQUIRED), ("symbols", REQUIRED),
                                   ("termination_symbol", REQUIRED), ("lm_only_scale", 0.1), ("am_only_scale", 0.1),
                                   ("boundary", None), ("rnnt_type", "regular")],
    "rnnt_loss_smoothed": [("lm", REQUIRED), ("am", REQUIRED), ("symbols", REQUIRED), ("termination_symbol", REQUIRED),
                           ("lm_only_scale", 0.1), ("am_only_scale", 0.1), ("boundary", None),
                           ("rnnt_type", "regular"), ("delay_penalty", 0.0), ("reduction", "mean"),
                           ("return_grad", False)],
}

# fast_rnnt where it differs from k2 (it has no HAT, no deprecated ranges, no fix_for_boundary export).
FAST_RNNT = {
    **{name: K2[name] for name in K2 if name not in ("get_hat_logprobs_pruned", "get_rnnt_prune_ranges_deprecated",
                                                    "fix_for_boundary")},
    "get_rnnt_logprobs_joint": [("logits", REQUIRED), ("symbols", REQUIRED), ("termination_symbol", REQUIRED),
                                ("boundary", None), ("rnnt_type", "regular")],
    "rnnt_loss": K2["rnnt_loss"] + [("return_grad", False)],
    "get_rnnt_logprobs_pruned": K2["get_rnnt_logprobs_pruned"][:4] + [("boundary", None), ("rnnt_type", "regular")],
    "rnnt_loss_pruned": K2["rnnt_loss_pruned"][:8] + [("return_grad", False)],
}

# What we add after k2's parameters (fast_rnnt's return_grad on the two losses k2 lacks it on).
EXTRA_TRAILING = {"rnnt_loss": [("return_grad", False)], "rnnt_loss_pruned": [("return_grad", False)]}
# Defaults we give where k2 requires the argument (fast_rnnt's default).
EXTRA_DEFAULTS = {("get_rnnt_logprobs_pruned", "boundary"): None}
# Where fast_rnnt's positional order conflicts with k2's, we follow k2 (README: "fast_rnnt").
FAST_RNNT_POSITIONAL_CONFLICTS = {"get_rnnt_logprobs_joint", "rnnt_loss_pruned"}


def ours(name):
    return [(p.name, p.default) for p in inspect.signature(getattr(k2, name)).parameters.values()]


def test_every_k2_function_is_exported():
    assert set(K2) <= set(k2.__all__)
    assert set(FAST_RNNT) <= set(k2.__all__)


# Beyond k2's API, keyword-only (so no k2 call can reach it by position): the losses' symbol_start.
KEYWORD_ONLY = {name: [("symbol_start", None)]
                for name in ("rnnt_loss", "rnnt_loss_pruned", "rnnt_loss_simple", "rnnt_loss_smoothed")}


@pytest.mark.parametrize("name", sorted(K2))
def test_signature_matches_k2(name):
    expected = [(p, EXTRA_DEFAULTS.get((name, p), d)) for p, d in K2[name]] + EXTRA_TRAILING.get(name, [])
    params = inspect.signature(getattr(k2, name)).parameters.values()
    positional = [(p.name, p.default) for p in params if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword_only = [(p.name, p.default) for p in params if p.kind == inspect.Parameter.KEYWORD_ONLY]
    assert positional == expected
    assert keyword_only == KEYWORD_ONLY.get(name, [])
    assert len(positional) + len(keyword_only) == len(params)  # no *args / **kwargs


@pytest.mark.parametrize("name", sorted(FAST_RNNT))
def test_every_fast_rnnt_call_by_keyword_works(name):
    # Same parameter names, and every parameter fast_rnnt lets you omit has its default here.
    mine = dict(ours(name))
    for param, default in FAST_RNNT[name]:
        assert param in mine, (name, param)
        if default is not REQUIRED:
            assert mine[param] == default, (name, param)
    if name not in FAST_RNNT_POSITIONAL_CONFLICTS:
        assert [p for p, _ in ours(name)][: len(FAST_RNNT[name])] == [p for p, _ in FAST_RNNT[name]]


def tiny_problem(B=2, T=5, S=3, C=6):
    gen = torch.Generator().manual_seed(0)
    lm, am = torch.randn(B, S + 1, C, generator=gen), torch.randn(B, T, C, generator=gen)
    logits = torch.randn(B, T, S + 1, C, generator=gen)
    symbols = torch.randint(1, C, (B, S), generator=gen)
    boundary = torch.tensor([[0, 0, S, T], [0, 0, 2, 4]])
    return lm, am, logits, symbols, boundary


def test_k2_positional_calls_mean_what_they_mean_in_k2():
    lm, am, logits, symbols, boundary = tiny_problem()
    for rnnt_type in ("regular", "modified"):
        by_position = k2.get_rnnt_logprobs(lm, am, symbols, 0, rnnt_type, boundary)
        by_keyword = k2.get_rnnt_logprobs(lm=lm, am=am, symbols=symbols, termination_symbol=0, boundary=boundary,
                                          rnnt_type=rnnt_type)
        for a, b in zip(by_position, by_keyword):
            torch.testing.assert_close(a, b)
        by_position = k2.get_rnnt_logprobs_joint(logits, symbols, 0, rnnt_type, boundary)
        by_keyword = k2.get_rnnt_logprobs_joint(logits=logits, symbols=symbols, termination_symbol=0,
                                                boundary=boundary, rnnt_type=rnnt_type)
        for a, b in zip(by_position, by_keyword):
            torch.testing.assert_close(a, b)
        # The lattice really is the requested type: px has T+1 columns only when regular.
        assert by_position[0].shape[2] == (6 if rnnt_type == "regular" else 5)


def test_boundary_in_rnnt_types_place_gets_a_clear_error():
    lm, am, logits, symbols, boundary = tiny_problem()
    with pytest.raises(ValueError, match="pass boundary=... by keyword"):
        k2.get_rnnt_logprobs_joint(logits, symbols, 0, boundary)  # fast_rnnt's positional order
    with pytest.raises(ValueError, match="pass boundary=... by keyword"):
        k2.get_rnnt_logprobs(lm, am, symbols, 0, boundary)


def test_return_values_are_k2s():
    lm, am, logits, symbols, boundary = tiny_problem()
    B, T, S, C = 2, 5, 3, 6
    loss = k2.rnnt_loss(logits, symbols, 0, boundary)
    assert isinstance(loss, torch.Tensor) and loss.shape == ()
    for fn, args in [(k2.rnnt_loss_simple, (lm, am, symbols, 0, boundary)),
                     (k2.rnnt_loss_smoothed, (lm, am, symbols, 0, 0.25, 0.0, boundary))]:
        assert fn(*args, reduction="none").shape == (B,)
        loss, (px_grad, py_grad) = fn(*args, return_grad=True)
        assert loss.shape == () and px_grad.shape == (B, S, T + 1) and py_grad.shape == (B, S + 1, T)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 2)
    assert ranges.shape == (B, T, 2) and ranges.dtype == torch.int64
    am_p, lm_p = k2.do_rnnt_pruning(am, lm, ranges)
    assert am_p.shape == (B, T, 2, C) and lm_p.shape == (B, T, 2, C)
    pruned_logits = torch.gather(logits, 2, ranges.unsqueeze(-1).expand(B, T, 2, C))
    px, py = k2.get_rnnt_logprobs_pruned(pruned_logits, symbols, ranges, 0, boundary)
    assert px.shape == (B, S, T + 1) and py.shape == (B, S + 1, T)
    scores = k2.mutual_information_recursion(px, py, boundary)
    assert scores.shape == (B,)
    assert k2.joint_mutual_information_recursion([px], [py], boundary).shape == (1, B)


def test_fast_rnnt_default_boundary_for_pruned_logprobs():
    lm, am, logits, symbols, _ = tiny_problem()
    B, T, S, C = 2, 5, 3, 6
    ranges = (torch.tensor([0, 0, 1, 1, 2]).reshape(1, T, 1) + torch.arange(2)).expand(B, T, 2)
    pruned_logits = torch.gather(logits, 2, ranges.unsqueeze(-1).expand(B, T, 2, C))
    full_boundary = torch.tensor([[0, 0, S, T]] * B)
    for a, b in zip(k2.get_rnnt_logprobs_pruned(pruned_logits, symbols, ranges, 0),
                    k2.get_rnnt_logprobs_pruned(pruned_logits, symbols, ranges, 0, full_boundary)):
        torch.testing.assert_close(a, b)

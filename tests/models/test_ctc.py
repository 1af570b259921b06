"""CTC head, CTC loss and CR-CTC consistency loss against independent references:
brute-force enumeration of CTC alignments and the consistency formula written out in float64."""

import itertools
import math

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.models import ModelConfig, build_transducer
from asr_recipes.models.ctc import CtcHead, consistency_loss, ctc_loss
from tests.numerics import float32_sum_tol

TINY = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=1, kernel_size=5, dropout=0.0, subsampling_channels=4,
            conv_norm="batch", decoder_dim=16, context_size=2, joiner_dim=16)


def collapse(path, blank=0):
    """An alignment's label sequence: merge repeats, then drop blanks."""
    return tuple(k for k, _ in itertools.groupby(path) if k != blank)


def brute_force_nll(log_probs, labels, blank=0):
    """-log sum over every frame-level path (V^T of them) that collapses to ``labels``."""
    T, V = log_probs.shape
    terms = [sum(log_probs[t, k] for t, k in enumerate(path))
             for path in itertools.product(range(V), repeat=T) if collapse(path, blank) == tuple(labels)]
    if not terms:
        return torch.tensor(math.inf, dtype=log_probs.dtype)
    return -torch.logsumexp(torch.stack(terms), dim=0)


CASES = [  # (frames, labels): plain, repeated label (needs a blank between), empty, too short for a repeat
    (5, [1, 2]),
    (5, [2, 2]),
    (4, []),
    (6, [1, 3, 1]),
    (2, [3, 3]),
]


def test_ctc_loss_equals_the_sum_over_all_alignments():
    torch.manual_seed(0)
    V, T_max = 4, 6
    logits = torch.randn(len(CASES), T_max, V, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor([T for T, _ in CASES])
    targets = torch.zeros(len(CASES), 3, dtype=torch.int64)
    for n, (_, labels) in enumerate(CASES):
        targets[n, : len(labels)] = torch.tensor(labels, dtype=torch.int64)
    target_lens = torch.tensor([len(labels) for _, labels in CASES])
    log_probs = logits.log_softmax(-1)  # (N, T, V)
    got = ctc_loss(log_probs, lens, targets, target_lens, reduction="none")
    want = torch.stack([brute_force_nll(log_probs[n, :T], labels) for n, (T, labels) in enumerate(CASES)])
    assert math.isinf(float(got[4].detach())) and math.isinf(float(want[4].detach()))  # [3, 3] needs 3 frames
    torch.testing.assert_close(got[:4], want[:4], rtol=1e-12, atol=1e-12)
    four = (log_probs[:4], lens[:4], targets[:4], target_lens[:4])  # the finite ones
    # gradients with respect to the logits (through the log-softmax, as the head computes them)
    (g_got,) = torch.autograd.grad(ctc_loss(*four, reduction="sum"), logits, retain_graph=True)
    (g_want,) = torch.autograd.grad(want[:4].sum(), logits, retain_graph=True)
    torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        assert float(ctc_loss(*four, reduction="sum")) == pytest.approx(float(want[:4].sum()), rel=1e-12)
        assert float(ctc_loss(*four, reduction="mean")) == pytest.approx(float(want[:4].mean()), rel=1e-12)


def test_ctc_loss_in_float32_and_under_autocast_matches_float64():
    torch.manual_seed(1)
    log_probs = torch.randn(3, 40, 7, dtype=torch.float64).log_softmax(-1)
    lens, targets, target_lens = torch.tensor([40, 33, 20]), torch.randint(1, 7, (3, 9)), torch.tensor([9, 5, 1])
    want = ctc_loss(log_probs, lens, targets, target_lens, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ctc_loss(log_probs.float(), lens, targets, target_lens, reduction="none")
    assert got.dtype == torch.float32
    # float32 log-adds over T x (2U+1) cells, in another order than float64's
    tol = float32_sum_tol(float(want.max()), 40 * (2 * 9 + 1))
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)


def reference_consistency(a, b, lens):
    """The formula in float64, frame by frame: 1/2 sum_t [KL(p_b || p_a) + KL(p_a || p_b)]."""
    out = []
    for n in range(a.size(0)):
        total = 0.0
        for t in range(int(lens[n])):
            la, lb = a[n, t].double(), b[n, t].double()
            total += float((lb.exp() * (lb - la)).sum() + (la.exp() * (la - lb)).sum())
        out.append(0.5 * total)
    return torch.tensor(out, dtype=torch.float64)


def test_consistency_loss_is_the_symmetric_kl_over_valid_frames():
    torch.manual_seed(2)
    a = torch.randn(3, 8, 5).log_softmax(-1)
    b = torch.randn(3, 8, 5).log_softmax(-1)
    lens = torch.tensor([8, 5, 1])
    got = consistency_loss(a, b, lens, reduction="none")
    want = reference_consistency(a, b, lens)
    # float32 terms, 8 frames x 5 classes summed
    tol = float32_sum_tol(float(want.max()), 8 * 5)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)
    torch.testing.assert_close(consistency_loss(b, a, lens, reduction="none"), got)  # symmetric
    assert float(consistency_loss(a, a, lens)) == 0.0
    assert float(consistency_loss(a, b, lens)) == pytest.approx(float(want.sum()), abs=3 * tol)
    # padded frames (t >= lens) do not count, whatever they hold
    b2 = b.clone()
    b2[1, 5:] = torch.randn(3, 5).log_softmax(-1)
    b2[2, 1:] = float("nan")
    torch.testing.assert_close(consistency_loss(a, b2, lens, reduction="none"), got)


def test_consistency_gradient_reaches_each_view_only_through_its_own_kl_term():
    """d cr / d log p_a = -1/2 p_b on valid frames (the target side is detached: no
    d/d log p_a of KL(p_a || p_b)), and 0 on padding; likewise for b."""
    torch.manual_seed(3)
    a = torch.randn(2, 6, 4).log_softmax(-1).requires_grad_()
    b = torch.randn(2, 6, 4).log_softmax(-1).requires_grad_()
    lens = torch.tensor([6, 4])
    grad_a, grad_b = torch.autograd.grad(consistency_loss(a, b, lens), (a, b))
    valid = (torch.arange(6)[None, :] < lens[:, None]).unsqueeze(-1).float()  # (N, T, 1)
    torch.testing.assert_close(grad_a, -0.5 * b.detach().exp() * valid)
    torch.testing.assert_close(grad_b, -0.5 * a.detach().exp() * valid)


def test_losses_check_their_arguments():
    a = torch.zeros(1, 3, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="reduction"):
        consistency_loss(a, a, torch.tensor([3]), reduction="avg")
    with pytest.raises(ValueError, match="equal shapes"):
        consistency_loss(a, a[:, :2], torch.tensor([2]))


def test_ctc_head_gives_normalised_log_probs_and_lives_in_the_state_dict():
    torch.manual_seed(4)
    model = build_transducer({**TINY, "ctc_head": True}, vocab_size=9).eval()
    assert isinstance(model.ctc_head, CtcHead)
    assert {"ctc_head.linear.weight", "ctc_head.linear.bias"} <= set(model.state_dict())
    x, lens = torch.randn(2, 50, NUM_MEL_BINS), torch.tensor([50, 31])
    with torch.no_grad():
        enc, enc_lens = model.encode(x, lens)
        log_probs = model.ctc_log_probs(enc)
    assert log_probs.shape == (2, enc.size(1), 9) and log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, enc.size(1)))


def test_a_model_config_without_ctc_head_builds_no_head_and_loads_old_weights():
    """Checkpoints written before ctc_head existed: their model_config lacks the key."""
    assert ModelConfig.from_mapping(TINY).transducer.ctc_head is False
    torch.manual_seed(5)
    old = build_transducer(TINY, vocab_size=9)
    new = build_transducer(ModelConfig.from_mapping(TINY).to_dict(), vocab_size=9)
    new.load_state_dict(old.state_dict())  # strict: no ctc_head.* keys expected or present
    assert new.ctc_head is None
    with pytest.raises(ValueError, match="no CTC head"):
        new.ctc_log_probs(torch.zeros(1, 3, 16))

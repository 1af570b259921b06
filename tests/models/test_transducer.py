"""Transducer losses at model level, against torchaudio's full RNN-T loss."""

from pathlib import Path

import pytest
import torch
import torchaudio
import yaml

from asr_recipes.constants import NUM_MEL_BINS, frames_after_subsampling
from asr_recipes.models import build_transducer
from asr_recipes.models.lattice import LatticeConfig

TINY = yaml.safe_load((Path(__file__).parents[2] / "conf" / "model" / "tiny.yaml").read_text())
V = 20


def make_model():
    torch.manual_seed(0)
    return build_transducer(TINY, vocab_size=V).eval()  # eval: batch norm uses running stats


def make_batch(feature_lens=(100, 77, 45), token_lens=(8, 5, 3), pad_value=-1, seed=0):
    g = torch.Generator().manual_seed(seed)
    N, T, U = len(feature_lens), max(feature_lens), max(token_lens)
    features = torch.randn(N, T, NUM_MEL_BINS, generator=g)
    tokens = torch.randint(1, V, (N, U), generator=g)
    for n, L in enumerate(token_lens):
        tokens[n, L:] = pad_value
    return features, torch.tensor(feature_lens), tokens, torch.tensor(token_lens)


def test_encode_shapes():
    model = make_model()
    features, feature_lens, _, _ = make_batch()
    out, lens = model.encode(features, feature_lens)
    assert out.shape == (3, frames_after_subsampling(100), TINY["d_model"])
    assert lens.tolist() == [frames_after_subsampling(int(t)) for t in feature_lens]


def test_pruned_loss_equals_full_loss_when_window_covers_all_labels():
    model = make_model()
    batch = make_batch()
    U = int(batch[3].max())
    with torch.no_grad():
        full = model.full_loss(*batch, reduction="none")
        for prune_range in (U + 1, U + 3):
            simple, pruned = model(*batch, LatticeConfig(prune_range=prune_range), reduction="none")
            assert simple.shape == pruned.shape == (3,)
            torch.testing.assert_close(pruned, full, atol=1e-4, rtol=1e-5)


def test_pruned_loss_is_never_below_full_loss():
    # a pruned lattice keeps a subset of the alignment paths: -log(kept mass) >= -log(all mass)
    model = make_model()
    batch = make_batch()
    with torch.no_grad():
        full = model.full_loss(*batch, reduction="none")
        _, pruned = model(*batch, LatticeConfig(prune_range=2), reduction="none")
    assert torch.all(pruned >= full - 1e-4)
    assert torch.any(pruned > full + 1e-3)  # with 8 labels and 2 kept positions something is lost


def test_simple_loss_is_rnnt_loss_of_the_additive_joiner():
    # with no smoothing the simple loss is plain RNN-T on logits am(t) + lm(u)
    model = make_model()
    features, feature_lens, tokens, token_lens = batch = make_batch()
    with torch.no_grad():
        simple, _ = model(*batch, LatticeConfig(lm_scale=0.0, am_scale=0.0), reduction="none")
        enc, enc_lens = model.encode(features, feature_lens)
        y = tokens.clamp(min=0)  # padding -> blank; positions past token_lens are ignored anyway
        sos_y = torch.cat([torch.zeros(3, 1, dtype=torch.int64), y], dim=1)
        am = model.simple_am_proj(enc[:, : int(enc_lens.max())])  # (N, T', V)
        lm = model.simple_lm_proj(model.decoder(sos_y))  # (N, U+1, V)
        expected = torchaudio.functional.rnnt_loss(
            am[:, :, None, :] + lm[:, None, :, :], y.int(), enc_lens.int(), token_lens.int(), blank=0, reduction="none"
        )
    torch.testing.assert_close(simple, expected, atol=1e-4, rtol=1e-5)


def modified_rnnt_loss_reference(logits: torch.Tensor, y: torch.Tensor, T: int, U: int) -> torch.Tensor:
    """-log P(y) when every frame emits blank or exactly one label (the "modified" transducer),
    by the forward recursion written out: alpha[t+1, u] = alpha[t, u] p(blank | t, u)
    + alpha[t, u-1] p(y_u | t, u-1). logits (T', U+1, V) of one utterance."""
    logp = logits.double().log_softmax(-1)
    alpha = torch.full((T + 1, U + 1), float("-inf"), dtype=torch.float64)
    alpha[0, 0] = 0.0
    for t in range(T):
        for u in range(U + 1):
            stay = alpha[t, u] + logp[t, u, 0]
            emit = alpha[t, u - 1] + logp[t, u - 1, y[u - 1]] if u > 0 else torch.tensor(float("-inf"))
            alpha[t + 1, u] = torch.logaddexp(stay, emit)
    return -alpha[T, U]


def test_modified_topology_pruned_loss_equals_its_written_out_recursion():
    model = make_model()
    features, feature_lens, tokens, token_lens = batch = make_batch()
    U = int(token_lens.max())
    with torch.no_grad():
        _, pruned = model(*batch, LatticeConfig(prune_range=U + 1, rnnt_type="modified"), reduction="none")
        _, regular = model(*batch, LatticeConfig(prune_range=U + 1), reduction="none")
        enc, enc_lens = model.encode(features, feature_lens)
        y = tokens.clamp(min=0)
        dec = model.decoder(torch.cat([torch.zeros(3, 1, dtype=torch.int64), y], dim=1))
        logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (N, T', U+1, V)
    for n in range(3):
        expected = modified_rnnt_loss_reference(logits[n], y[n], int(enc_lens[n]), int(token_lens[n]))
        torch.testing.assert_close(pruned[n].double(), expected, atol=1e-3, rtol=1e-5)
    assert not torch.allclose(pruned, regular)
    # More labels than encoder frames: impossible with one label per frame (the data filters drop
    # such training cuts), fine with several.
    short = make_batch(feature_lens=(30,), token_lens=(8,))
    assert frames_after_subsampling(30) < 8
    with torch.no_grad():
        assert torch.isfinite(model(*short, LatticeConfig(prune_range=9), reduction="none")[1]).all()
        with pytest.raises(ValueError, match="at most one symbol per frame"):
            model(*short, LatticeConfig(prune_range=9, rnnt_type="modified"), reduction="none")


def test_reductions_and_token_padding_value():
    model = make_model()
    with torch.no_grad():
        simple_none, pruned_none = model(*make_batch(pad_value=-1), reduction="none")
        simple_sum, pruned_sum = model(*make_batch(pad_value=999), reduction="sum")
        simple_mean, pruned_mean = model(*make_batch(pad_value=0), reduction="mean")
        # extra all-padding label columns do not matter either
        f, fl, t, tl = make_batch()
        wide = torch.cat([t, torch.full((3, 4), 7)], dim=1)
        _, pruned_wide = model(f, fl, wide, tl, reduction="none")
    torch.testing.assert_close(simple_sum, simple_none.sum())
    torch.testing.assert_close(pruned_sum, pruned_none.sum())
    torch.testing.assert_close(pruned_mean, pruned_none.mean())
    torch.testing.assert_close(pruned_wide, pruned_none)


def test_training_step_gives_finite_gradients_everywhere():
    model = make_model().train()
    simple, pruned = model(*make_batch())
    (0.5 * simple + pruned).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if not name.startswith("decoder.embedding"):  # blank's embedding row is frozen at 0
            assert p.grad.abs().sum() > 0, name


def test_losses_are_float32_under_bf16_autocast():
    model = make_model()
    batch = make_batch()
    with torch.no_grad():
        ref_simple, ref_pruned = model(*batch)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            simple, pruned = model(*batch)
    assert simple.dtype == pruned.dtype == torch.float32
    torch.testing.assert_close(simple, ref_simple, rtol=0.05, atol=0)
    torch.testing.assert_close(pruned, ref_pruned, rtol=0.05, atol=0)


def test_bad_labels_raise_clear_errors():
    model = make_model()
    f, fl, t, tl = make_batch()
    bad = t.clone()
    bad[1, 2] = 0
    with pytest.raises(ValueError, match="utterance 1 of the batch has token id 0 at position 2"):
        model(f, fl, bad, tl)
    bad[1, 2] = V
    with pytest.raises(ValueError, match=f"token id {V}"):
        model(f, fl, bad, tl)
    with pytest.raises(ValueError, match="token_lens must lie in"):
        model(f, fl, t, torch.tensor([9, 5, 3]))
    with pytest.raises(ValueError, match="int64"):
        model(f, fl, t.int(), tl)



def test_decoding_time_path_reproduces_the_training_lattice():
    # what a decoder does: project encoder frames once, run the decoder on the last
    # context_size tokens (left-padded with blank), join pre-projected vectors
    model = make_model()
    features, feature_lens, tokens, token_lens = make_batch()
    c = model.decoder.context_size
    with torch.no_grad():
        enc, enc_lens = model.encode(features, feature_lens)
        sos_y = torch.cat([torch.zeros(3, 1, dtype=torch.int64), tokens.clamp(min=0)], dim=1)  # (N, U+1)
        lattice = model.joiner(enc.unsqueeze(2), model.decoder(sos_y).unsqueeze(1))  # (N, T', U+1, V)
        enc_proj = model.joiner.encoder_proj(enc)  # (N, T', J)
        for n in range(3):
            history = [0] * c + tokens[n, : token_lens[n]].tolist()
            for u in range(int(token_lens[n]) + 1):
                context = torch.tensor([history[u : u + c]])  # (1, c): last c tokens after u labels
                dec_proj = model.joiner.decoder_proj(model.decoder(context, need_pad=False))  # (1, 1, J)
                for t in range(int(enc_lens[n])):
                    step = model.joiner(enc_proj[n, t], dec_proj[0, 0], project_input=False)  # (V,)
                    torch.testing.assert_close(step, lattice[n, t, u], atol=1e-5, rtol=1e-5)


def test_pruned_training_memorises_a_batch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster and immune to a busy machine
    try:
        torch.manual_seed(0)
        model = build_transducer(TINY, vocab_size=12).train()
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        g = torch.Generator().manual_seed(0)
        features = torch.randn(4, 80, NUM_MEL_BINS, generator=g)
        feature_lens = torch.tensor([80, 70, 60, 50])
        tokens = torch.randint(1, 12, (4, 5), generator=g)
        token_lens = torch.tensor([5, 4, 3, 2])
        first = None
        for step in range(200):
            simple, pruned = model(features, feature_lens, tokens, token_lens, LatticeConfig(prune_range=3))
            pruned_scale = 0.0 if step < 10 else 1.0  # bounds are meaningless before the simple loss learns
            opt.zero_grad()
            (0.5 * simple + pruned_scale * pruned).backward()
            opt.step()
            first = pruned.item() if first is None else first
        assert pruned.item() < 0.05 * first
        with torch.no_grad():  # eval mode (batch-norm running stats) still knows the batch
            full = model.eval().full_loss(features, feature_lens, tokens, token_lens, reduction="none")
        assert torch.all(full < 1.0), full  # each label sequence has probability > 1/e
    finally:
        torch.set_num_threads(threads)

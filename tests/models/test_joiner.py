"""Joiner: project_input paths agree, any leading dims, broadcasting over the full lattice."""

import pytest
import torch

from asr_recipes.models.joiner import Joiner


def reference_logits(j: Joiner, enc_vec: torch.Tensor, dec_vec: torch.Tensor) -> torch.Tensor:
    """One (t, u) pair from the weights: W_o tanh(W_e e + b_e + W_d d + b_d) + b_o."""
    h = torch.tanh(j.encoder_proj.weight @ enc_vec + j.encoder_proj.bias + j.decoder_proj.weight @ dec_vec + j.decoder_proj.bias)
    return j.output_linear.weight @ h + j.output_linear.bias


@pytest.fixture
def joiner():
    torch.manual_seed(0)
    return Joiner(encoder_dim=5, decoder_dim=3, joiner_dim=4, vocab_size=7)


@pytest.mark.parametrize("lead", [(2,), (2, 3, 4), (2, 3, 5, 1)])
def test_projected_and_unprojected_paths_agree(joiner, lead):
    enc = torch.randn(*lead, 5)
    dec = torch.randn(*lead, 3)
    logits = joiner(enc, dec)
    assert logits.shape == (*lead, 7)
    pre = joiner(joiner.encoder_proj(enc), joiner.decoder_proj(dec), project_input=False)
    torch.testing.assert_close(logits, pre, atol=1e-6, rtol=1e-6)
    flat_e, flat_d, flat_l = enc.reshape(-1, 5), dec.reshape(-1, 3), logits.reshape(-1, 7)
    for i in range(flat_e.size(0)):
        torch.testing.assert_close(flat_l[i], reference_logits(joiner, flat_e[i], flat_d[i]), atol=1e-5, rtol=1e-5)


def test_full_lattice_by_broadcasting(joiner):
    enc = torch.randn(2, 4, 5)  # (N, T, De)
    dec = torch.randn(2, 3, 3)  # (N, U+1, Dd)
    logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (N, T, U+1, V)
    assert logits.shape == (2, 4, 3, 7)
    for n in range(2):
        for t in range(4):
            for u in range(3):
                torch.testing.assert_close(logits[n, t, u], reference_logits(joiner, enc[n, t], dec[n, u]), atol=1e-5, rtol=1e-5)


def test_mismatched_ranks_raise(joiner):
    with pytest.raises(ValueError, match="same number of dims"):
        joiner(torch.randn(2, 4, 5), torch.randn(2, 3))

"""StatelessDecoder: context window, left padding with blank, decoding step == training path."""

import pytest
import torch

from asr_recipes.constants import BLANK_ID
from asr_recipes.models.decoder import StatelessDecoder


def reference_output(dec: StatelessDecoder, y: torch.Tensor) -> torch.Tensor:
    """Loop over positions: relu(sum_k w[:, k] * emb(token at u - c + 1 + k)), blank before 0."""
    N, U = y.shape
    c = dec.context_size
    emb = dec.embedding.weight.detach()
    out = torch.zeros(N, U, dec.output_dim)
    for n in range(N):
        for u in range(U):
            window = [int(y[n, p]) if p >= 0 else BLANK_ID for p in range(u - c + 1, u + 1)]
            if c == 1:
                acc = emb[window[0]].clone()
            else:
                w = dec.conv.weight.detach()[:, 0, :]  # (D, c): one kernel per channel
                acc = sum(w[:, k] * emb[tok] for k, tok in enumerate(window))
            out[n, u] = torch.relu(acc)
    return out


@pytest.mark.parametrize("context_size", [1, 2, 3])
def test_training_path_matches_windowed_reference(context_size):
    torch.manual_seed(0)
    dec = StatelessDecoder(vocab_size=11, decoder_dim=6, context_size=context_size)
    y = torch.randint(1, 11, (3, 7))
    y[:, 0] = BLANK_ID  # SOS
    out = dec(y)
    assert out.shape == (3, 7, 6)
    torch.testing.assert_close(out, reference_output(dec, y), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("context_size", [1, 2, 3])
def test_decoding_step_equals_training_path_at_each_position(context_size):
    torch.manual_seed(0)
    dec = StatelessDecoder(vocab_size=11, decoder_dim=6, context_size=context_size)
    y = torch.randint(1, 11, (4, 6))
    y[:, 0] = BLANK_ID
    full = dec(y)  # (N, U, D)
    padded = torch.cat([torch.full((4, context_size - 1), BLANK_ID), y], dim=1)  # decoder's left padding
    for u in range(y.size(1)):
        step = dec(padded[:, u : u + context_size], need_pad=False)  # last c tokens up to u
        assert step.shape == (4, 1, 6)
        torch.testing.assert_close(step[:, 0], full[:, u], atol=1e-6, rtol=1e-6)


def test_output_depends_only_on_the_last_context_size_tokens():
    torch.manual_seed(0)
    dec = StatelessDecoder(vocab_size=11, decoder_dim=6, context_size=2)
    y = torch.randint(1, 11, (1, 6))
    out = dec(y)
    z = y.clone()
    z[0, 2] = (y[0, 2] % 10) + 1  # change token 2: affects outputs 2 and 3 only
    out_z = dec(z)
    changed = (out - out_z).abs().sum(-1)[0] > 0
    assert changed.tolist() == [False, False, True, True, False, False]


def test_sos_context_gives_zero_output():
    dec = StatelessDecoder(vocab_size=5, decoder_dim=4, context_size=2)
    start = torch.full((2, 2), BLANK_ID)  # nothing decoded yet
    assert torch.all(dec(start, need_pad=False) == 0)


def test_bad_inputs_raise():
    dec = StatelessDecoder(vocab_size=5, decoder_dim=4, context_size=2)
    with pytest.raises(ValueError, match="exactly context_size=2"):
        dec(torch.zeros(2, 3, dtype=torch.int64), need_pad=False)
    with pytest.raises(ValueError, match="int64"):
        dec(torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="context_size must be >= 1"):
        StatelessDecoder(5, 4, 0)

"""StatelessDecoder: context window, zeros before the start, decoding step == training path, icefall's variant."""

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


# ---------------------------------------------------------------- icefall's variant (Zipformer recipes)
def icefall_style(context_size: int, dim: int = 8) -> StatelessDecoder:
    torch.manual_seed(0)
    return StatelessDecoder(vocab_size=11, decoder_dim=dim, context_size=context_size, conv_groups=dim // 4,
                            learned_blank=True, relu_without_conv=False)


def grouped_reference(dec: StatelessDecoder, y: torch.Tensor) -> torch.Tensor:
    """Loop over positions and channels: channel o sums its group's 4 input channels over the
    window; positions before the start contribute nothing (zero vectors)."""
    N, U = y.shape
    c, D = dec.context_size, dec.output_dim
    emb, w = dec.embedding.weight.detach(), dec.conv.weight.detach()  # (V, D), (D, 4, c)
    out = torch.zeros(N, U, D)
    for n in range(N):
        for u in range(U):
            for o in range(D):
                group = range(o // 4 * 4, o // 4 * 4 + 4)
                acc = 0.0
                for k, p in enumerate(range(u - c + 1, u + 1)):
                    if p >= 0:
                        acc += sum(w[o, i % 4, k] * emb[int(y[n, p]), i] for i in group)
                out[n, u, o] = max(acc, 0.0)
    return out


def test_icefall_variant_has_a_learned_blank_and_zeros_before_the_start():
    dec = icefall_style(context_size=3)
    assert dec.conv.weight.shape == (8, 4, 3)  # groups of 4 channels, as icefall's
    assert dec.embedding.weight[BLANK_ID].abs().sum() > 0
    y = torch.randint(1, 11, (2, 5))
    y[:, 0] = BLANK_ID
    torch.testing.assert_close(dec(y), grouped_reference(dec, y), atol=1e-6, rtol=1e-6)
    # a search's start context [-1, -1, blank] is the training input at position 0
    start = dec(torch.tensor([[-1, -1, BLANK_ID]]), need_pad=False)
    torch.testing.assert_close(start[0, 0], dec(y)[0, 0], atol=1e-6, rtol=1e-6)


def test_icefall_variant_without_conv_has_no_relu():
    dec = icefall_style(context_size=1)
    y = torch.arange(11)[None, :]
    torch.testing.assert_close(dec(y), dec.embedding.weight[None].detach())
    assert (dec(y) < 0).any()


def test_before_the_start_equals_blank_for_our_decoder():
    """Our decoders' blank embedding is zero: the searches' start context [-1, ..., blank]
    gives what [blank, ..., blank] gave before."""
    dec = StatelessDecoder(vocab_size=7, decoder_dim=6, context_size=3)
    torch.nn.init.normal_(dec.conv.weight)
    for a, b in (([-1, -1, 0], [0, 0, 0]), ([-1, 0, 5], [0, 0, 5])):
        assert torch.equal(dec(torch.tensor([a]), need_pad=False), dec(torch.tensor([b]), need_pad=False))

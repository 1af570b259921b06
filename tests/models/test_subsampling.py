"""Conv2dSubsampling: length formula vs a brute-force window count, no padding leak."""

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS, SUBSAMPLING_FACTOR, frames_after_subsampling
from asr_recipes.models.subsampling import Conv2dSubsampling


def count_windows(length: int, kernel: int = 3, stride: int = 2) -> int:
    """Number of start positions s = 0, stride, 2*stride, ... with s + kernel <= length."""
    n, s = 0, 0
    while s + kernel <= length:
        n, s = n + 1, s + stride
    return n


def test_length_formula_matches_brute_force_and_conv_output():
    torch.manual_seed(0)
    sub = Conv2dSubsampling(NUM_MEL_BINS, d_model=16, channels=4)
    for T in range(7, 60):
        expected = count_windows(count_windows(T))
        assert frames_after_subsampling(T) == expected
        out, lens = sub(torch.randn(2, T, NUM_MEL_BINS), torch.tensor([T, 7]))
        assert out.shape == (2, expected, 16)
        assert lens.tolist() == [expected, 1]
    # the rate really is x4 for long inputs: 1000 frames (10 s) -> 249 frames (40 ms each)
    assert frames_after_subsampling(1000) == 1000 // SUBSAMPLING_FACTOR - 1


def test_valid_outputs_ignore_padded_input_frames():
    torch.manual_seed(0)
    sub = Conv2dSubsampling(NUM_MEL_BINS, d_model=16, channels=4)
    T, lens = 53, torch.tensor([53, 31, 7])
    x = torch.randn(3, T, NUM_MEL_BINS)
    y = x.clone()
    for n, L in enumerate(lens.tolist()):
        y[n, L:] = 1e3 * torch.randn(T - L, NUM_MEL_BINS)  # garbage padding
    out_x, out_lens = sub(x, lens)
    out_y, _ = sub(y, lens)
    for n, L in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out_x[n, :L], out_y[n, :L], rtol=0, atol=0)
    # and the last valid frame does depend on the last valid input frame (no over-masking)
    z = x.clone()
    z[1, 30] += 1.0
    assert not torch.equal(sub(z, lens)[0][1, out_lens[1] - 1], out_x[1, out_lens[1] - 1])


def test_rejects_batches_shorter_than_receptive_field():
    sub = Conv2dSubsampling(NUM_MEL_BINS, d_model=8, channels=2)
    with pytest.raises(ValueError, match="at least 7 input frames"):
        sub(torch.randn(1, 6, NUM_MEL_BINS), torch.tensor([6]))

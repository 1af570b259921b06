"""Encoder.lookahead_frames is what each encoder's front end reads: measured on causal models by
changing one feature frame and seeing which encoder frames change (the chunk mask keeps later
chunks from reaching earlier ones, so the first changed chunk is the first one that read it)."""

import pytest
import torch

from asr_recipes.models.build import build_transducer
from tests.models.causal_configs import CAUSAL_CONFORMER, CAUSAL_ZIPFORMER

CONFORMER = {**CAUSAL_CONFORMER, "num_layers": 2}  # two layers: the measurement covers stacked layers too


@pytest.mark.parametrize("cfg,chunk,lookahead", [(CONFORMER, 1, 3), (CAUSAL_ZIPFORMER, 4, 13)])
@torch.no_grad()
def test_lookahead_frames_is_what_the_front_end_reads(cfg, chunk, lookahead):
    """Frame t' covers feature frames 4t' .. 4t' + 3 + lookahead: a chunk ending at frame e
    reads up to 4e + 3 + lookahead (Conformer 4t' + 6, Zipformer 4t' + 16)."""
    torch.manual_seed(0)
    encoder = build_transducer(cfg, 10).encoder.eval()
    assert encoder.lookahead_frames == lookahead
    T = 120
    x, lens = torch.randn(1, T, 80), torch.tensor([T])
    base, out_lens = encoder(x, lens, chunk_size=chunk, left_context=-1)
    num_out = int(out_lens[0])
    for f in range(T - 20):
        y = x.clone()
        y[0, f] = torch.randn(80) * 3
        out, _ = encoder(y, lens, chunk_size=chunk, left_context=-1)
        # exact: a frame that does not read f is computed from identical numbers (the Zipformer's
        # ConvNeXt look-ahead starts small, at ~1e-6 of the output, so no tolerance would do)
        changed = (out != base).any(-1)[0, :num_out].nonzero().flatten()
        # the first chunk whose last frame e reads frame f: 4e + 3 + lookahead >= f
        e = next(e for e in range(chunk - 1, 10**6, chunk) if 4 * e + 3 + lookahead >= f)
        first = e - chunk + 1
        if first >= num_out:
            continue
        assert int(changed[0]) == first, (f, changed[:4].tolist())

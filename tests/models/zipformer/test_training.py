"""A Zipformer Transducer in training mode: the schedules follow set_batch_count, the random
training-time parts (skips, dropout, balancers, whitening) run, the pruned loss trains, and the
searches decode its output."""

import pytest
import torch

from asr_recipes.decoding.options import DecodingOptions
from asr_recipes.decoding.search import decode
from asr_recipes.models.build import build_transducer
from asr_recipes.models.zipformer import ScheduledFloat
from asr_recipes.models.zipformer.config import ICEFALL_DECODER
from asr_recipes.models.zipformer.constraints import Balancer, Whiten
from asr_recipes.training.objective import ChunkTrainingConfig

TINY = dict(encoder="zipformer", encoder_dim=[16, 16, 24, 32, 24, 16], encoder_unmasked_dim=12, num_heads=[2, 2, 2, 4, 2, 2],
            query_head_dim=8, value_head_dim=4, pos_head_dim=2, pos_dim=8, feedforward_dim=32, num_encoder_layers=1,
            cnn_module_kernel=[7, 5, 5, 3, 5, 7], embed_channels=[4, 8, 16], decoder_dim=16, joiner_dim=16,
            context_size=2, causal=True, **ICEFALL_DECODER)
CHUNKS = ChunkTrainingConfig(chunk_sizes=(4, 8, -1), left_contexts=(8, -1))
V = 12


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 150, 80, generator=g)
    tokens = torch.randint(1, V, (3, 6), generator=g)
    return x, torch.tensor([150, 131, 97]), tokens, torch.tensor([6, 4, 5])


def test_schedules_follow_the_batch_count():
    model = build_transducer(TINY, V).train()
    layer = model.encoder.encoders[0].layers[0]
    model.set_batch_count(0)
    start = {name: float(getattr(layer, name)) for name in ("attention_skip_rate", "conv_skip_rate", "ff2_skip_rate")}
    assert start == {"attention_skip_rate": 0.2, "conv_skip_rate": 0.2, "ff2_skip_rate": 0.1}
    assert float(layer.bypass.skip_rate) == 0.5  # layer drop before this stack's warm-up
    assert float(layer.bypass.scale_min) == 0.9
    model.set_batch_count(100_000)
    assert float(layer.attention_skip_rate) == 0.0 and float(layer.bypass.scale_min) == 0.2
    assert float(layer.bypass.skip_rate) == pytest.approx(0.035)  # final layer drop at ds 1
    model.eval()
    assert all(float(m) == m.default for m in model.modules() if isinstance(m, ScheduledFloat))


def test_training_mode_is_random_and_eval_mode_is_not():
    model = build_transducer(TINY, V)
    x, lens, _, _ = batch()
    model.set_batch_count(0)  # strongest skips and dropout
    model.train()
    torch.manual_seed(0)
    a, _ = model.encode(x, lens)
    b, _ = model.encode(x, lens)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        c, _ = model.encode(x, lens)
        d, _ = model.encode(x, lens)
    assert torch.equal(c, d)


@pytest.mark.parametrize("batch_count", [0, 3000, 50_000])
def test_pruned_loss_trains_with_the_training_time_machinery(batch_count):
    torch.manual_seed(batch_count)
    model = build_transducer(TINY, V).train()
    model.set_batch_count(batch_count)
    # always check the constraints on this batch, so their backward terms run too
    for m in model.modules():
        if isinstance(m, Whiten):
            m.min_prob = m.max_prob = m.prob = 1.0
        elif isinstance(m, Balancer):
            m.prob = ScheduledFloat((0.0, 1.0), default=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, lens, tokens, token_lens = batch()
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(6):
        chunk, left = CHUNKS.draw(g)
        simple, pruned = model(x, lens, tokens, token_lens, chunk_size=chunk, left_context=left)
        loss = 0.5 * simple + pruned
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert all(torch.isfinite(gr).all() for gr in grads)
        assert len(grads) > 0.9 * len(list(model.parameters()))
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_searches_decode_its_output(method):
    torch.manual_seed(0)
    model = build_transducer(TINY, V).eval()
    x, lens, _, _ = batch()
    with torch.no_grad():
        out, out_lens = model.encode(x, lens, chunk_size=8, left_context=16)
    results = decode(model, out, out_lens, DecodingOptions(method=method, beam=3, max_sym_per_frame=2))
    assert len(results) == 3
    for r, T in zip(results, out_lens.tolist()):
        assert all(0 < k < V for k in r.tokens) and len(r.tokens) <= 2 * T

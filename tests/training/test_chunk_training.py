"""Dynamic chunk training (trainer.chunk_training): the uniform draw, icefall's list draw, and
that the chunk sizes drawn for an encoder are ones it takes (the Zipformer: multiples of 4)."""

from collections import Counter

import pytest
import torch

from asr_recipes.models.build import build_transducer
from asr_recipes.training.objective import ChunkTrainingConfig, LossConfig, TransducerObjective
from tests.models.causal_configs import CAUSAL_CONFORMER, CAUSAL_ZIPFORMER


def draws(cfg, n, multiple=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [cfg.draw(g, multiple=multiple) for _ in range(n)]


def test_uniform_draw_is_the_documented_one():
    """full context with probability full_context_prob (one uniform number), else a chunk from
    randint(1, max_chunk + 1): the same random numbers, in the same order, as written here."""
    cfg = ChunkTrainingConfig(full_context_prob=0.25, max_chunk=16, num_left_chunks=2)
    g = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(200):
        if float(torch.rand((), generator=g)) < 0.25:
            expected.append((0, -1))
        else:
            chunk = int(torch.randint(1, 17, (), generator=g))
            expected.append((chunk, 2 * chunk))
    assert draws(cfg, 200, seed=3) == expected


def test_uniform_draw_in_multiples_covers_exactly_the_valid_sizes():
    cfg = ChunkTrainingConfig(full_context_prob=0.25, max_chunk=18)
    counts = Counter(chunk for chunk, _ in draws(cfg, 4000, multiple=4))
    assert set(counts) == {0, 4, 8, 12, 16}
    assert abs(counts[0] / 4000 - 0.25) < 0.03  # 3 sigma = 0.021
    for chunk in (4, 8, 12, 16):
        assert abs(counts[chunk] / 4000 - 0.75 / 4) < 0.03


def test_list_draw_follows_icefall():
    """A chunk size from the list (-1: full context), then a left context rounded down to whole
    chunks, at least one (icefall's left_context_frames // chunk_size, minimum 1)."""
    cfg = ChunkTrainingConfig(chunk_sizes=[8, 32, -1], left_contexts=[12, 64, -1])
    assert cfg.chunk_sizes == (8, 32, -1)  # config lists become tuples
    seen = Counter(draws(cfg, 600))
    assert set(seen) == {(8, 8), (8, 64), (8, -1), (32, 32), (32, 64), (32, -1), (0, -1)}
    assert abs(seen[(0, -1)] / 600 - 1 / 3) < 0.06
    assert set(draws(ChunkTrainingConfig(chunk_sizes=[4]), 20)) == {(4, -1)}  # no left_contexts: all


@pytest.mark.parametrize("bad,match", [
    (dict(chunk_sizes=[4, 0]), "chunk_sizes needs chunk sizes >= 1"),
    (dict(chunk_sizes=[]), "chunk_sizes needs"),
    (dict(chunk_sizes=[4], left_contexts=[-2]), "left_contexts needs"),
])
def test_bad_lists_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ChunkTrainingConfig(**bad)


def test_each_encoder_checks_the_chunks_it_can_be_given():
    zipformer = build_transducer(CAUSAL_ZIPFORMER, 10).encoder
    conformer = build_transducer(CAUSAL_CONFORMER, 10).encoder
    for cfg in (ChunkTrainingConfig(), ChunkTrainingConfig(chunk_sizes=[4, 8, 32, -1])):
        cfg.check_encoder(zipformer)
        cfg.check_encoder(conformer)
    ChunkTrainingConfig(chunk_sizes=[1, 3, 7]).check_encoder(conformer)
    with pytest.raises(ValueError, match=r"chunk_sizes \[4, 6, -1\].*multiple of 4"):
        ChunkTrainingConfig(chunk_sizes=[4, 6, -1]).check_encoder(zipformer)
    with pytest.raises(ValueError, match="max_chunk=3 is below the smallest chunk"):
        ChunkTrainingConfig(max_chunk=3).check_encoder(zipformer)


@pytest.mark.parametrize("model_cfg,chunks,valid", [
    (CAUSAL_ZIPFORMER, ChunkTrainingConfig(full_context_prob=0.2, max_chunk=16), {0, 4, 8, 12, 16}),
    (CAUSAL_ZIPFORMER, ChunkTrainingConfig(chunk_sizes=[4, 8, -1], left_contexts=[8, 16]), {0, 4, 8}),
    (CAUSAL_CONFORMER, ChunkTrainingConfig(full_context_prob=0.2, max_chunk=3), {0, 1, 2, 3}),
])
def test_the_objective_gives_the_encoder_only_chunks_it_takes(model_cfg, chunks, valid):
    """What the encoder is called with in training steps (seen by a forward pre-hook), and full
    context in eval mode."""
    torch.manual_seed(0)
    model = build_transducer(model_cfg, 10)
    objective = TransducerObjective(model, LossConfig(), chunks).train()
    seen = []
    model.encoder.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("chunk_size", 0)),
                                            with_kwargs=True)
    x, lens = torch.randn(2, 80, 80), torch.tensor([80, 61])
    tokens, token_lens = torch.randint(1, 10, (2, 3)), torch.tensor([3, 2])
    with torch.no_grad():
        for _ in range(40):
            objective(x, lens, tokens, token_lens, step=0)
        assert set(seen) == valid
        seen.clear()
        objective.eval()(x, lens, tokens, token_lens, step=0)
        assert seen == [0]
    with pytest.raises(ValueError, match="multiple of"):
        TransducerObjective(build_transducer(CAUSAL_ZIPFORMER, 10), LossConfig(), ChunkTrainingConfig(chunk_sizes=[2]))

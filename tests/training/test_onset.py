"""Blank-only frames before the speech onset in streaming training
(trainer.chunk_training.speech_onset_rise): where the onset is found, which encoder frame
becomes the first that may emit, and that the training objective's lattice loses exactly the
alignments with earlier symbols."""

import pytest
import torch

from asr_recipes.models.build import build_transducer
from asr_recipes.training.objective import ChunkTrainingConfig, LossConfig, TransducerObjective
from asr_recipes.training.onset import speech_onset_frames, symbol_start_frames
from tests.models.causal_configs import CAUSAL_CONFORMER as CONFORMER, CAUSAL_ZIPFORMER as ZIPFORMER


def silence_then_speech(onsets, lengths, F=80, floor=-12.0, speech=-6.0, seed=0):
    """(N, T, F) log-mel features: noise around ``floor`` up to each onset, ``speech`` after,
    padding (-30) past each length."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = floor + 0.3 * torch.randn(len(onsets), T, F, generator=g)
    for i, (onset, n) in enumerate(zip(onsets, lengths)):
        x[i, onset:n] += speech - floor
        x[i, n:] = -30.0
    return x, torch.tensor(lengths)


def test_onset_is_the_first_frame_of_a_sustained_rise():
    x, lens = silence_then_speech([37, 10, 0, 90], [120, 60, 80, 120])
    x[1, 5] += 6.0  # a one-frame click before speech: not an onset (two loud frames in a row needed)
    onsets = speech_onset_frames(x, lens, rise=1.0)
    assert onsets.tolist() == [37, 10, 0, 90]


def test_no_onset_found_constrains_nothing():
    x, lens = silence_then_speech([200, 30], [100, 3])  # never loud; too short for a floor
    x[0, 100:] = 10.0  # loud padding must not count
    assert speech_onset_frames(x, lens, rise=1.0).tolist() == [0, 0]


def test_first_emitting_frame_is_the_last_frame_before_the_onset_is_heard():
    """Measured, not computed from the same formula: with one-frame chunks (each encoder frame
    sees its own input window and the past), the first frame that hears the onset is the first
    whose output changes when the features from the onset on change. symbol_start may be one
    frame earlier (never forbid a frame that hears the word), never more."""
    torch.manual_seed(0)
    encoder = build_transducer(CONFORMER, 6).encoder.eval()
    for onset in range(0, 120, 5):
        x, lens = silence_then_speech([onset], [160])
        other = x.clone()
        other[:, onset:] = torch.randn_like(other[:, onset:])
        with torch.no_grad():
            a, _ = encoder(x, lens, chunk_size=1, left_context=-1)
            b, _ = encoder(other, lens, chunk_size=1, left_context=-1)
        changed = (a - b).abs().amax(dim=-1)[0] > 1e-6
        hears = int(changed.nonzero()[0])
        start = int(symbol_start_frames(encoder, x, lens, rise=1.0)[0])
        assert start in (hears - 1, hears) or (hears == 0 and start == 0), (onset, hears, start)


def test_zipformer_first_emitting_frame_precedes_the_onset():
    encoder = build_transducer(ZIPFORMER, 6).encoder
    for onset in (0, 20, 61, 130):
        x, lens = silence_then_speech([onset], [240])
        start = int(symbol_start_frames(encoder, x, lens, rise=1.0)[0])
        assert 0 <= start and (start == 0 or encoder.output_lengths(torch.tensor(onset)) >= start + 1)


def test_objective_forbids_symbols_before_the_onset_only_when_asked():
    torch.manual_seed(0)
    model = build_transducer(CONFORMER, 6)
    x, lens = silence_then_speech([60, 0], [160, 160])
    tokens, token_lens = torch.tensor([[1, 2, 3], [4, 5, 1]]), torch.tensor([3, 3])
    loss = LossConfig(rnnt_type="modified", warm_step=1)
    plain = TransducerObjective(model, loss, ChunkTrainingConfig(full_context_prob=1.0))
    onset = TransducerObjective(model, loss, ChunkTrainingConfig(full_context_prob=1.0, speech_onset_rise=1.0))
    _, free = plain(x, lens, tokens, token_lens, step=10)
    _, constrained = onset(x, lens, tokens, token_lens, step=10)
    # the simple loss's lattice is the same minus the early symbol arcs: higher where speech starts late
    assert constrained["simple"][0] > free["simple"][0] + 1e-3
    torch.testing.assert_close(constrained["simple"][1], free["simple"][1])  # onset 0: nothing forbidden
    onset.eval()  # validation: no constraint (it reports the plain loss)
    plain.eval()
    torch.testing.assert_close(onset(x, lens, tokens, token_lens, step=10)[1]["simple"],
                               plain(x, lens, tokens, token_lens, step=10)[1]["simple"])


def test_offline_models_and_bad_values():
    offline = build_transducer({**CONFORMER, "causal": False}, 6)
    objective = TransducerObjective(offline, LossConfig(), ChunkTrainingConfig(speech_onset_rise=1.0))
    assert objective.chunks is None  # an offline model never draws chunks nor forbids frames
    with pytest.raises(ValueError, match="speech_onset_rise"):
        ChunkTrainingConfig(speech_onset_rise=0.0)
    with pytest.raises(ValueError, match="loss.type=pruned"):
        TransducerObjective(build_transducer(CONFORMER, 6), LossConfig(type="full"),
                            ChunkTrainingConfig(speech_onset_rise=1.0))

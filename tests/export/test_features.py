"""sherpa-onnx computes its own features (kaldi-native-fbank with the defaults of its
FeatureExtractorConfig); they must be the features this project trains on (lhotse's Fbank,
asr_recipes.data.features), or an exported model is wrong for its users."""

import numpy as np
import pytest

from asr_recipes.data.features import fbank_extractor, feature_config
from asr_recipes.export import contract

knf = pytest.importorskip("kaldi_native_fbank")


def sherpa_fbank(samples: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank configured as sherpa-onnx's features.cc does by default."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = -400.0
    f = knf.OnlineFbank(opts)
    f.accept_waveform(16000, samples.tolist())
    f.input_finished()
    return np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    """A tone sweep with noise, then digital silence (the floor of the log, as in tail padding)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (200 + 800 * t) * t) + 0.02 * rng.standard_normal(t.size)
    return np.concatenate([x, np.zeros(8000)]).astype(np.float32)


@pytest.mark.parametrize("seconds", [0.3, 1.237, 2.0])
def test_training_features_equal_sherpa_features(seconds):
    samples = signal(seconds)
    ours = fbank_extractor().extract(samples[None], 16000)  # (T, 80)
    theirs = sherpa_fbank(samples)
    assert ours.shape == theirs.shape  # same frame count: no snipped edges on either side
    assert np.abs(ours - theirs).max() < 1e-3  # log-mel values reach ~15; float32 noise is ~1e-4


def test_recorded_feature_settings_are_sherpas():
    assert feature_config() == contract.SHERPA_FEATURES

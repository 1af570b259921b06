"""The Zipformer through the model registry (encoder: zipformer) and conf/model/zipformer_*.yaml:
icefall's published parameter counts (egs/librispeech/ASR/RESULTS.md at icefall 36e0420c:
"number of model parameters"), validation, and the chunk sizes a causal Zipformer takes."""

from pathlib import Path

import pytest
import torch
import yaml

from asr_recipes.models.build import ModelConfig, build_transducer, count_parameters
from asr_recipes.models.zipformer.config import ICEFALL_DECODER, ZipformerConfig

CONF = Path(__file__).parents[3] / "conf" / "model"


def load(name: str) -> dict:
    return yaml.safe_load((CONF / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name,causal,icefall_count", [
    ("zipformer_s", False, 23_285_615),
    ("zipformer_m", False, 65_549_011),
    ("zipformer_m", True, 66_110_931),  # icefall's streaming Zipformer-M
    ("zipformer_l", False, 148_439_574),
])
def test_parameter_counts_equal_icefalls_with_vocab_500(name, causal, icefall_count):
    cfg = dict(load(name), causal=causal)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_transducer(cfg, vocab_size=500)
    assert count_parameters(model) == icefall_count


@pytest.mark.parametrize("name", ["zipformer_s", "zipformer_m", "zipformer_l", "zipformer_mini"])
def test_configs_state_icefalls_decoder(name):
    cfg = load(name)
    assert cfg["encoder"] == "zipformer" and {k: cfg[k] for k in ICEFALL_DECODER} == ICEFALL_DECODER
    assert "chunk_size" not in cfg and "left_context" not in cfg  # training settings: trainer.chunk_training


def test_mini_config_is_small_and_builds():
    model = build_transducer(load("zipformer_mini"), vocab_size=100)
    assert count_parameters(model) < 3_000_000
    x, lens = torch.randn(2, 60, 80), torch.tensor([60, 41])
    out, out_lens = model.eval().encode(x, lens)
    assert out.shape == (2, 13, 128) and out_lens.tolist() == [13, 9]


def test_default_encoder_keys_are_zipformer_m():
    cfg = ModelConfig.from_mapping({"encoder": "zipformer", "decoder_dim": 512, "joiner_dim": 512, "context_size": 2})
    assert cfg.encoder_config == ZipformerConfig() == ModelConfig.from_mapping(load("zipformer_m")).encoder_config


def test_omegaconf_node_is_accepted():
    from omegaconf import OmegaConf

    cfg = ModelConfig.from_mapping(OmegaConf.create(load("zipformer_s")))
    assert cfg.encoder_config.encoder_dim == (192, 256, 256, 256, 256, 256)


def test_bad_config_lists_every_problem():
    base = load("zipformer_mini")
    with pytest.raises(ValueError) as err:
        ModelConfig.from_mapping({**base, "d_model": 3, "causal": "yes", "pos_dim": 4.0, "encoder_dim": [1.5]})
    msg = str(err.value)
    for problem in ("unknown key 'd_model'", "causal must be bool", "pos_dim must be int",
                    "encoder_dim must be an int or a list of ints"):
        assert problem in msg
    with pytest.raises(ValueError) as err:
        ModelConfig.from_mapping({**base, "encoder_dim": [192, 256]})
    assert "encoder_dim needs 1 or 6 values" in str(err.value)
    with pytest.raises(ValueError) as err:
        ModelConfig.from_mapping({**base, "encoder_unmasked_dim": 512, "cnn_module_kernel": 30,
                                  "decoder_conv_group_size": 3})
    msg = str(err.value)
    assert "must not exceed encoder_dim" in msg and "must be odd" in msg and "must divide decoder_dim=256" in msg


def test_causal_zipformer_takes_chunks_that_every_downsampling_factor_splits():
    """A chunk of c encoder frames is 2c frames at 50 Hz, split by factors up to 8: c % 4 == 0."""
    encoder = build_transducer(dict(load("zipformer_mini"), causal=True), 30).encoder
    assert encoder.chunk_multiple == 4
    for chunk in (4, 8, 12, 32):
        encoder.check_chunk_size(chunk)
    for chunk in (0, 1, 2, 6, 10):
        with pytest.raises(ValueError, match="multiple of 4"):
            encoder.check_chunk_size(chunk)
    with pytest.raises(ValueError, match="multiple of 4"):
        encoder(torch.zeros(1, 100, 80), torch.tensor([100]), chunk_size=6)
    offline = build_transducer(load("zipformer_mini"), 30).encoder
    with pytest.raises(ValueError, match="causal"):
        offline.check_chunk_size(8)
    factors = build_transducer({**load("zipformer_mini"), "causal": True, "downsampling_factor": [1, 2, 3, 2, 2, 2]},
                               30).encoder
    assert factors.chunk_multiple == 3  # 2c must split by 2 and 3

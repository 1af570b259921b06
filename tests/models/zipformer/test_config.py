"""ZipformerConfig, the builders and conf/model/zipformer_*.yaml: icefall's published parameter
counts (egs/librispeech/ASR/RESULTS.md at icefall 36e0420c: "number of model parameters"),
validation, and the training chunk draw."""

from pathlib import Path

import pytest
import torch
import yaml

from asr_recipes.models.zipformer.config import ZipformerConfig, build_zipformer_transducer

CONF = Path(__file__).parents[3] / "conf" / "model"


def load(name: str) -> dict:
    return yaml.safe_load((CONF / f"{name}.yaml").read_text())


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,causal,icefall_count", [
    ("zipformer_s", False, 23_285_615),
    ("zipformer_m", False, 65_549_011),
    ("zipformer_m", True, 66_110_931),  # icefall's streaming Zipformer-M
    ("zipformer_l", False, 148_439_574),
])
def test_parameter_counts_equal_icefalls_with_vocab_500(name, causal, icefall_count):
    cfg = dict(load(name), causal=causal)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_zipformer_transducer(cfg, vocab_size=500)
    assert count(model) == icefall_count


def test_mini_config_is_small_and_builds():
    model = build_zipformer_transducer(load("zipformer_mini"), vocab_size=100)
    assert count(model) < 3_000_000
    x, lens = torch.randn(2, 60, 80), torch.tensor([60, 41])
    out, out_lens = model.eval().encode(x, lens)
    assert out.shape == (2, 13, 128) and out_lens.tolist() == [13, 9]


def test_default_config_is_zipformer_m_and_round_trips():
    cfg = ZipformerConfig.from_mapping(load("zipformer_m"))
    assert cfg == ZipformerConfig()
    saved = cfg.to_dict()
    assert isinstance(saved["encoder_dim"], list)  # plain types for checkpoints
    assert ZipformerConfig.from_mapping(saved) == cfg


def test_omegaconf_node_is_accepted():
    from omegaconf import OmegaConf

    assert ZipformerConfig.from_mapping(OmegaConf.create(load("zipformer_s"))).encoder_dim == (192, 256, 256, 256,
                                                                                               256, 256)


def test_bad_config_lists_every_problem():
    with pytest.raises(ValueError) as err:
        ZipformerConfig.from_mapping({"encoder_dim": [192, 256], "d_model": 3, "causal": "yes", "pos_dim": 4.0})
    msg = str(err.value)
    for problem in ("unknown key 'd_model'", "causal must be true or false", "pos_dim must be an int"):
        assert problem in msg
    with pytest.raises(ValueError) as err:
        ZipformerConfig.from_mapping({"encoder_dim": [192, 256], "encoder_unmasked_dim": 512})
    assert "encoder_dim needs 1 or 6 values" in str(err.value)
    with pytest.raises(ValueError) as err:
        ZipformerConfig.from_mapping({"encoder_unmasked_dim": 512, "cnn_module_kernel": 30, "chunk_size": [3, -1]})
    msg = str(err.value)
    assert "must not exceed encoder_dim" in msg and "must be odd" in msg and "got 3" in msg


def test_chunk_draw_follows_icefall():
    """A chunk size from the list (-1: full context), then a left context rounded down to whole
    chunks, at least one (icefall's left_context_frames // chunk_size, minimum 1)."""
    cfg = ZipformerConfig(chunk_size=(8, 32, -1), left_context=(12, 64, -1))
    g = torch.Generator().manual_seed(0)
    seen = {cfg.draw_chunk(g) for _ in range(300)}
    assert seen == {(8, 8), (8, 64), (8, -1), (32, 32), (32, 64), (32, -1), (0, -1)}

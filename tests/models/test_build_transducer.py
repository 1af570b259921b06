"""build_transducer / ModelConfig / count_parameters and the conf/model/*.yaml configs."""

from pathlib import Path

import pytest
import torch
import yaml

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.models import ModelConfig, build_transducer, count_parameters
from asr_recipes.models.build import ConformerConfig

CONF = Path(__file__).parents[2] / "conf" / "model"
#: the decoder variant keys' defaults: our stateless decoder (models/decoder.py)
OUR_DECODER = {"decoder_conv_group_size": 1, "decoder_learned_blank": False, "decoder_relu_without_conv": True,
               "decoder_balancers": False}


def load(name: str) -> dict:
    """conf/model/<name>.yaml with its Hydra defaults list (other model configs, then _self_)
    merged in order, as Hydra composes the model group."""
    own = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    defaults = own.pop("defaults", ["_self_"])
    cfg = {}
    for base in defaults + ([] if "_self_" in defaults else ["_self_"]):
        cfg.update(own if base == "_self_" else load(base))
    return cfg


def expected_parameters(c: dict, vocab: int, mel_bins_after_subsampling: int = 19) -> int:
    """Parameter count written out layer by layer (19 = mel bins left of 80 after two 3x3/2 convs)."""
    d, ff, ch, k = c["d_model"], c["ff_dim"], c["subsampling_channels"], c["kernel_size"]
    dec, J, ctx = c["decoder_dim"], c["joiner_dim"], c["context_size"]
    subsampling = (9 * ch + ch) + (9 * ch * ch + ch) + (ch * mel_bins_after_subsampling * d + d)
    feed_forward = d * ff + ff + ff * d + d
    attention = 3 * (d * d + d) + d * d + 2 * d + (d * d + d)  # qkv, pos (no bias), u/v, out
    conv = (d * 2 * d + 2 * d) + (d * k + d) + 2 * d + (d * d + d)  # pointwise, depthwise, norm, pointwise
    layer = 2 * feed_forward + attention + conv + 5 * 2 * d  # 5 LayerNorms
    decoder = vocab * dec + (dec * ctx if ctx > 1 else 0)  # embedding + bias-free depthwise conv
    joiner = (d * J + J) + (dec * J + J) + (J * vocab + vocab)
    simple = (d * vocab + vocab) + (dec * vocab + vocab)
    return subsampling + c["num_layers"] * layer + decoder + joiner + simple


@pytest.mark.parametrize("name", ["tiny", "small", "conformer_large"])
def test_configs_hold_exactly_the_architecture_keys_and_build(name):
    cfg = load(name)
    assert set(cfg) == {"encoder", *ConformerConfig.__dataclass_fields__, "decoder_dim", "context_size", "joiner_dim",
                        "ctc_head"}
    model = build_transducer(cfg, vocab_size=500)
    assert count_parameters(model) == expected_parameters(cfg, 500)


def test_conformer_large_is_about_80M_with_vocab_500():
    n = count_parameters(build_transducer(load("conformer_large"), vocab_size=500))
    assert 76e6 < n < 82e6, n  # icefall's pruned_transducer_stateless2 model is ~78.6M


def test_small_fits_the_cpu_budget():
    assert 3e6 <= count_parameters(build_transducer(load("small"), vocab_size=100)) <= 6e6


def test_rebuild_from_plain_dict_reproduces_the_model():
    torch.manual_seed(0)
    cfg = ModelConfig.from_mapping(load("tiny"))
    model = build_transducer(cfg.to_dict(), vocab_size=30).eval()
    saved = {"model_config": cfg.to_dict(), "vocab_size": 30, "state_dict": model.state_dict()}
    torch.manual_seed(1)  # different init, so equality below comes from the weights alone
    rebuilt = build_transducer(saved["model_config"], saved["vocab_size"], NUM_MEL_BINS).eval()
    rebuilt.load_state_dict(saved["state_dict"])
    x, lens = torch.randn(2, 60, NUM_MEL_BINS), torch.tensor([60, 41])
    torch.testing.assert_close(rebuilt.encode(x, lens)[0], model.encode(x, lens)[0], rtol=0, atol=0)


def test_omegaconf_node_is_accepted():
    from omegaconf import OmegaConf

    node = OmegaConf.create({"model": load("tiny")}).model
    assert count_parameters(build_transducer(node, 10)) == expected_parameters(load("tiny"), 10)


def test_bad_config_lists_every_problem():
    cfg = load("tiny")
    cfg["d_modle"] = cfg.pop("d_model")
    cfg["num_heads"] = "two"
    with pytest.raises(ValueError) as err:
        build_transducer(cfg, 10)
    msg = str(err.value)
    assert "unknown key 'd_modle'" in msg and "missing key 'd_model'" in msg and "num_heads must be int" in msg
    with pytest.raises(ValueError, match="vocab_size"):
        build_transducer(load("tiny"), 1)


def test_count_parameters_counts_shared_and_frozen_tensors_once():
    lin = torch.nn.Linear(3, 4)
    seq = torch.nn.Sequential(lin, lin)  # the same weights twice
    assert count_parameters(seq) == 3 * 4 + 4
    lin.bias.requires_grad_(False)
    assert count_parameters(seq, trainable_only=True) == 3 * 4


def test_the_encoder_key_selects_the_encoder_and_defaults_to_the_conformer():
    """A model_config written before the key existed (no "encoder") builds the same Conformer."""
    cfg = load("tiny")
    assert cfg["encoder"] == "conformer"
    old = {k: v for k, v in cfg.items() if k != "encoder"}
    torch.manual_seed(0)
    new_model = build_transducer(cfg, 10)
    torch.manual_seed(0)
    old_model = build_transducer(old, 10)
    assert type(old_model.encoder).__name__ == "Conformer"
    for (name, a), b in zip(new_model.state_dict().items(), old_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert ModelConfig.from_mapping(old).to_dict() == {**cfg, **OUR_DECODER}
    with pytest.raises(ValueError, match="unknown encoder 'transformer'; known encoders: conformer"):
        build_transducer({**cfg, "encoder": "transformer"}, 10)


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_every_model_config_round_trips_exactly_in_plain_types(name):
    """What a checkpoint stores (to_dict) reads back to the same config; it holds every key, in
    plain types (lists, not tuples), with the YAML's values; keys the YAML omits get defaults."""
    cfg = load(name)
    saved = ModelConfig.from_mapping(cfg).to_dict()
    assert ModelConfig.from_mapping(saved) == ModelConfig.from_mapping(cfg)
    assert all(saved[k] in (v, [v]) for k, v in cfg.items())  # one value for every stack: a list of one
    assert all(type(v) in (str, int, float, bool, list) for v in saved.values())
    assert all(type(i) is int for v in saved.values() if isinstance(v, list) for i in v)
    assert ModelConfig.from_mapping(saved).to_dict() == saved


def test_a_conformer_can_state_icefalls_decoder():
    """The decoder variant is a transducer key, not a property of the encoder: a Conformer with
    icefall's Zipformer decoder (conv groups of 4 channels, learned blank, balancers)."""
    cfg = {**load("tiny"), "decoder_conv_group_size": 4, "decoder_learned_blank": True,
           "decoder_relu_without_conv": False, "decoder_balancers": True}
    model = build_transducer(cfg, 10)
    decoder = model.decoder
    assert decoder.conv.groups == cfg["decoder_dim"] // 4 and decoder.conv.weight.shape == (32, 4, 2)
    assert decoder.embedding.padding_idx is None and decoder.balancer is not None
    assert build_transducer(load("tiny"), 10).decoder.conv.weight.shape == (32, 1, 2)  # depthwise
    with pytest.raises(ValueError, match="decoder_conv_group_size must divide decoder_dim=32, got 5"):
        build_transducer({**cfg, "decoder_conv_group_size": 5}, 10)


def test_zipformer_is_built_through_the_same_registry_with_icefalls_initial_scale():
    """encoder: zipformer builds the Zipformer transducer; the family's init hook starts the
    joiner's input projections and the simple projections at 0.25 of PyTorch's U(-1/sqrt(in),
    1/sqrt(in)) weights (icefall's ScaledLinear initial_scale=0.25); the Conformer's keep PyTorch's."""
    from asr_recipes.models.zipformer import Zipformer

    torch.manual_seed(0)
    zipformer = build_transducer(load("zipformer_mini"), 100)
    conformer = build_transducer(load("small"), 100)
    assert isinstance(zipformer.encoder, Zipformer) and zipformer.encoder.output_dim == 128

    def bound_ratio(linear):  # max |w| relative to PyTorch's bound 1/sqrt(in)
        return float(linear.weight.detach().abs().max()) * linear.in_features ** 0.5

    for model, lo, hi in ((zipformer, 0.23, 0.25), (conformer, 0.95, 1.0)):
        for linear in (model.joiner.encoder_proj, model.joiner.decoder_proj, model.simple_am_proj,
                       model.simple_lm_proj):
            assert lo < bound_ratio(linear) <= hi
        assert 0.95 < bound_ratio(model.joiner.output_linear) <= 1.0  # not scaled

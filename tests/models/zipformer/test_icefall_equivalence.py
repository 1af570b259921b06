"""Our Zipformer transducer with icefall's weights computes what icefall's own code computed.

References: tests/fixtures/icefall/zipformer_{offline,causal}.pt, written by icefall's code
(tests/fixtures/icefall/make_fixtures.py, see the README there): tiny randomly initialised
models with all six stacks (the offline one with icefall's CTC head), their outputs on fixed
features, each utterance encoded alone (so icefall's outputs are free of padding effects). We
run the utterances as one padded batch, which also checks that padding does not reach valid
frames. The models come through the importer (asr_recipes.checkpoint.icefall_import): icefall's
state dict as a file, with icefall's vocabulary files (the offline model: AISHELL-style char
tokens.txt; the causal one: a bpe.model) and the train.py flags no shape tells (num_heads,
encoder_unmasked_dim), then model_from_checkpoint, as any imported model is used.

Tolerance: 1e-5 of the largest output magnitude. Both sides compute in float32 (eps 6e-8) with
different operation orders; an output sits at the end of ~10 layers, each summing up to a few
hundred products, so rounding differences stay around 1e-6 relative (measured: ~2e-7), while a
wrong or missing term changes outputs by far more than 1e-3.
"""

from pathlib import Path

import pytest
import torch

from asr_recipes.checkpoint import model_from_checkpoint
from asr_recipes.checkpoint.icefall_import import import_icefall
from asr_recipes.decoding.options import DecodingOptions
from asr_recipes.decoding.search import decode
from asr_recipes.decoding.settings import resolve
from asr_recipes.models.zipformer.config import ICEFALL_DECODER
from asr_recipes.models.zipformer.icefall_names import encoder_state_dict

FIXTURES = Path(__file__).parents[2] / "fixtures" / "icefall"
LOG_EPS = -23.025850929940457  # icefall pads features with log(1e-10)
#: the vocabulary files of icefall's layouts that go with each model (11 tokens, <unk> = 2)
TOKENS = {"offline": FIXTURES / "files/lang_char/tokens.txt", "causal": FIXTURES / "files/lang_bpe/bpe.model"}


def load(name: str) -> dict:
    return torch.load(FIXTURES / f"zipformer_{name}.pt", weights_only=True)


def imported(name: str, data: dict, tmp_dir: Path) -> dict:
    """Our checkpoint of icefall's model: its state dict saved as a file, imported with the
    train.py flags that no shape tells."""
    path = tmp_dir / f"icefall-{name}.pt"
    torch.save(data["state_dict"], path)  # a bare state dict, icefall's names
    flags = {k: ",".join(map(str, data["config"][k])) for k in ("num_heads", "encoder_unmasked_dim")}
    return import_icefall(path, TOKENS[name], flags).checkpoint


def model_from(data: dict, name: str = "causal", tmp_dir: Path = None):
    """Our model for icefall's, through the importer."""
    return model_from_checkpoint(imported(name, data, tmp_dir))[0]


def assert_relative(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    err = (ours.double() - ref.double()).abs().max().item()
    assert err <= tol * ref.abs().max().item(), f"max error {err:.3g} vs max |ref| {ref.abs().max().item():.3g}"


def assert_valid_frames_equal(out, out_lens, ref, ref_lens):
    assert out_lens.tolist() == ref_lens.tolist()
    for n, T in enumerate(ref_lens.tolist()):
        assert_relative(out[n, :T], ref[n, :T])


@pytest.fixture(scope="module", params=["offline", "causal"])
def case(request, tmp_path_factory):
    data = load(request.param)
    return request.param, data, model_from(data, request.param, tmp_path_factory.mktemp(request.param))


def test_fixtures_come_from_the_stated_icefall_commit(case):
    _, data, _ = case
    assert data["icefall_commit"] == "36e0420c7e3e849a25b3d24dbf913c424f3d23c9"


def test_encoder_state_dict_loads_into_the_encoder_alone(case):
    _, data, model = case
    encoder = type(model.encoder)(**data["config"]).eval()
    encoder.load_state_dict(encoder_state_dict(data["state_dict"]), strict=True)


@torch.no_grad()
def test_encoder_equals_icefall_in_a_padded_batch(case):
    name, data, model = case
    x, lens = data["features"].float(), data["feature_lens"]
    if name == "offline":
        assert_valid_frames_equal(*model.encode(x, lens), *data["encoder"])
    else:
        assert_valid_frames_equal(*model.encode(x, lens), *data["full_context"])  # icefall's chunk size -1
        chunked = model.encode(x, lens, chunk_size=data["chunk_size"], left_context=data["left_context"])
        assert_valid_frames_equal(*chunked, *data["chunked"])


@torch.no_grad()
def test_chunk_by_chunk_streaming_equals_icefalls(tmp_path):
    """icefall's streaming_decode feeds features padded with LOG_EPS to whole windows of
    2 * chunk + 13 frames (at 50 Hz) every 2 * chunk frames; we feed the same windows."""
    data = load("causal")
    encoder = model_from(data, "causal", tmp_path).encoder
    chunk, left = data["chunk_size"], data["left_context"]
    window, shift = encoder.chunk_window(chunk)
    x, lens = data["features"].float(), data["feature_lens"]
    for n, T in enumerate(lens.tolist()):
        ref = data["streaming"]["chunk_outputs"][n]  # (num_chunks * chunk, D)
        num_chunks = ref.size(0) // chunk
        padded = torch.full((num_chunks * shift + window - shift, x.size(2)), LOG_EPS)
        padded[:T] = x[n, :T]
        states = encoder.init_states(1, left)
        outs = []
        for k in range(num_chunks):
            out, out_lens, states = encoder.streaming_forward(padded[None, k * shift : k * shift + window],
                                                              torch.tensor([window]), states)
            assert out_lens.tolist() == [chunk]
            outs.append(out[0])
        assert_relative(torch.cat(outs), ref)
        if n == 0:  # the caches too, in icefall's layout and order
            icefall_states = data["streaming"]["first_stream_final_states"]
            assert [s.shape for s in states] == [s.shape for s in icefall_states]
            assert states[-1].tolist() == icefall_states[-1].tolist()  # processed 50 Hz frames
            for ours, theirs in zip(states[:-1], icefall_states[:-1]):
                assert_relative(ours, theirs)


@torch.no_grad()
def test_decoder_and_joiner_equal_icefall(case):
    _, data, model = case
    torch.testing.assert_close(model.decoder(data["tokens"]), data["decoder_out"], rtol=1e-6, atol=1e-6)
    contexts = data["contexts"]  # includes icefall's start context [-1, blank]
    torch.testing.assert_close(model.decoder(contexts, need_pad=False), data["context_out"], rtol=1e-6, atol=1e-6)
    logits = model.joiner(data["joiner_encoder_in"], data["joiner_decoder_in"])
    torch.testing.assert_close(logits, data["joiner_logits"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
@torch.no_grad()
def test_searches_give_icefalls_tokens(case, method):
    """icefall's greedy_search_batch (one symbol per frame) and modified_beam_search (beam 4),
    on icefall's encoder outputs and on ours; icefall treats no <unk> specially."""
    name, data, model = case
    options = DecodingOptions(method=method, beam=4, max_sym_per_frame=1, unk_id=None)
    stored = data["encoder"] if name == "offline" else data["chunked"]
    assert [r.tokens for r in decode(model, *stored, options)] == data[method]
    x, lens = data["features"].float(), data["feature_lens"]
    encoded = model.encode(x, lens) if name == "offline" else model.encode(
        x, lens, chunk_size=data["chunk_size"], left_context=data["left_context"])
    assert [r.tokens for r in decode(model, *encoded, options)] == data[method]



@pytest.mark.parametrize("name", ["offline", "causal"])
def test_the_import_reads_icefalls_architecture_from_the_weights(name, tmp_path):
    """Every size icefall built the model with (the fixture records its constructor arguments)
    comes out of the importer, read from the shapes (plus the two flags no shape tells)."""
    data = load(name)
    ckpt = imported(name, data, tmp_path)
    cfg = ckpt["model_config"]
    for key, value in data["config"].items():
        want = value * len(cfg[key]) if isinstance(value, list) and len(value) == 1 else value
        assert cfg[key] == want, key
    assert (cfg["decoder_dim"], cfg["joiner_dim"], cfg["context_size"]) == (
        data["decoder_dim"], data["joiner_dim"], data["context_size"])
    assert cfg["ctc_head"] == data["use_ctc"] and cfg["encoder"] == "zipformer"
    assert {k: cfg[k] for k in ICEFALL_DECODER} == ICEFALL_DECODER
    assert ckpt["vocab_size"] == data["vocab_size"] and ckpt["feature_dim"] == 80


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
@torch.no_grad()
def test_searches_with_the_recorded_settings_give_icefalls_tokens(method, tmp_path):
    """The imported checkpoint records unk_id = 2 (icefall's <unk>): decoded with its recorded
    settings, the searches give the tokens of icefall's searches with model.unk_id set (which
    then never emit <unk>, as sherpa-onnx and our searches)."""
    for name in ("offline", "causal"):
        data = load(name)
        ckpt = imported(name, data, tmp_path)
        model, tokenizer = model_from_checkpoint(ckpt)
        assert tokenizer.unk_id == 2
        options = resolve(ckpt, method=method).options()
        assert options.unk_id == 2 and options.beam == 4 and options.max_sym_per_frame == 1
        stored = data["encoder"] if name == "offline" else data["chunked"]
        assert [r.tokens for r in decode(model, *stored, options)] == data[f"{method}_no_unk"]
        assert data[f"{method}_no_unk"] != data[method]  # the fixture emits <unk> otherwise: a real difference


@torch.no_grad()
def test_ctc_head_equals_icefalls_ctc_output(tmp_path):
    """icefall's ctc_output (dropout, linear, log-softmax) is our CTC head, on the stored encoder
    output and on ours."""
    data = load("offline")
    model = model_from(data, "offline", tmp_path)
    enc, lens = data["encoder"]
    for n, T in enumerate(lens.tolist()):
        assert_relative(model.ctc_log_probs(enc)[n, :T], data["ctc_log_probs"][n, :T])
    ours, our_lens = model.encode(data["features"].float(), data["feature_lens"])
    for n, T in enumerate(lens.tolist()):
        assert_relative(model.ctc_log_probs(ours)[n, :T], data["ctc_log_probs"][n, :T])

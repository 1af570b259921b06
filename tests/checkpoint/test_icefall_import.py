"""The importer on icefall's own file layouts (tests/fixtures/icefall/files, written by icefall's
code: see make_fixtures.py): epoch-N.pt from icefall's save_checkpoint (params with PosixPath,
model_avg, optimizer, scheduler, sampler), pretrained.pt, a bpe.model and a char tokens.txt.

The two epoch files' weights are such that icefall's own averages of them (its
average_checkpoints_with_averaged_model and average_checkpoints, run when the fixture was made)
are the weights whose outputs files/reference.pt stores; each file's ``model`` is another set.
So importing with icefall's averaging semantics must reproduce icefall's outputs, and the
default import must take the file's ``model`` itself.
"""

import logging
import pathlib
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint
from asr_recipes.checkpoint.icefall_files import IcefallImportError, load_icefall_file
from asr_recipes.checkpoint.icefall_import import import_icefall, write_import
from asr_recipes.data.icefall_tokens import IcefallTokensError, tokenizer_from_icefall
from asr_recipes.decoding.search import decode
from asr_recipes.decoding.settings import resolve
from asr_recipes.models.zipformer.icefall_names import transducer_state_dict

FILES = Path(__file__).parents[1] / "fixtures" / "icefall" / "files"
EPOCH_1, EPOCH_2, PRETRAINED = FILES / "exp/epoch-1.pt", FILES / "exp/epoch-2.pt", FILES / "pretrained.pt"
BPE, CHARS = FILES / "lang_bpe/bpe.model", FILES / "lang_char/tokens.txt"


def raw(path: Path) -> dict:
    """The file as torch reads it with exactly the one extra type allowed (independent of the importer)."""
    with torch.serialization.safe_globals([pathlib.PosixPath]):
        return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(FILES / "reference.pt", weights_only=True)


def assert_relative(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    err = (ours.double() - ref.double()).abs().max().item()
    assert err <= tol * ref.abs().max().item(), f"max error {err:.3g} vs max |ref| {ref.abs().max().item():.3g}"


@torch.no_grad()
def assert_gives_icefalls_outputs(ckpt: dict, ref: dict) -> None:
    """Chunked encoder output (chunk and left context recorded by the import) and both searches
    with the recorded settings equal icefall's."""
    model, _ = model_from_checkpoint(ckpt)
    assert (ckpt["decoding"]["chunk_size"], ckpt["decoding"]["left_context"]) == (ref["chunk_size"],
                                                                                    ref["left_context"])
    out, lens = model.encode(ref["features"].float(), ref["feature_lens"], chunk_size=ref["chunk_size"],
                             left_context=ref["left_context"])
    ref_out, ref_lens = ref["chunked"]
    assert lens.tolist() == ref_lens.tolist()
    for n, T in enumerate(lens.tolist()):
        assert_relative(out[n, :T], ref_out[n, :T])
    for method in ("greedy_search", "modified_beam_search"):
        options = resolve(ckpt, method=method).options()
        assert [r.tokens for r in decode(model, out, lens, options)] == ref[f"{method}_no_unk"]


def test_icefall_epoch_files_hold_a_path_and_nothing_else_unsafe():
    """Why SAFE_GLOBALS is exactly PosixPath: icefall's params store exp_dir as one; plain
    weights_only loading refuses the file."""
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(EPOCH_2)) == ["pathlib.PosixPath"]
    with pytest.raises(Exception, match="PosixPath"):
        torch.load(EPOCH_2, weights_only=True)
    assert isinstance(load_icefall_file(EPOCH_2)["exp_dir"], pathlib.PosixPath)


def test_default_import_takes_the_files_own_model():
    result = import_icefall(EPOCH_2, BPE)
    ours, _ = transducer_state_dict(raw(EPOCH_2)["model"])
    assert result.checkpoint["model"].keys() == ours.keys()
    assert all(torch.equal(result.checkpoint["model"][k], v) for k, v in ours.items())
    assert result.weights == "epoch-2.pt: model"


def test_use_averaged_model_gives_icefalls_average_and_its_outputs(reference):
    result = import_icefall(EPOCH_2, BPE, use_averaged_model=True, avg=1)
    assert "epoch-1.pt (excluded, batch 400) and epoch-2.pt (batch 1000)" in result.weights
    assert_gives_icefalls_outputs(result.checkpoint, reference)


def test_plain_average_of_epochs_gives_icefalls_outputs(reference):
    result = import_icefall(EPOCH_2, BPE, avg=2)
    assert result.weights == "the mean of the models of epoch-1.pt, epoch-2.pt"
    assert_gives_icefalls_outputs(result.checkpoint, reference)


def test_averaged_model_from_the_first_batch_is_the_running_average_itself():
    result = import_icefall(EPOCH_2, BPE, use_averaged_model=True, avg=2)
    ours, _ = transducer_state_dict(raw(EPOCH_2)["model_avg"])
    assert all(torch.equal(result.checkpoint["model"][k], v) for k, v in ours.items())


def test_recorded_training_flags_and_settings_are_used():
    """epoch-N.pt records train.py's params: num_heads and encoder_unmasked_dim (no shape tells
    them), the chunk it was trained with, and the loss settings the prune report reads."""
    ckpt = import_icefall(EPOCH_2, BPE).checkpoint
    assert ckpt["model_config"]["num_heads"] == [2, 2] and ckpt["model_config"]["encoder_unmasked_dim"] == [8, 8]
    assert ckpt["decoding"] == {"method": "greedy_search", "beam": 4, "max_sym_per_frame": 1, "unk_id": 2,
                                "chunk_size": 8, "left_context": 16}  # icefall's --chunk-size 16, 32 frames at 50 Hz
    assert ckpt["train_config"] == {"loss": {"type": "pruned", "prune_range": 5, "lm_scale": 0.25, "am_scale": 0.0}}
    assert ckpt["progress"] == {"epoch": 2, "step": 1000}
    assert ckpt["imported"]["icefall_params"]["exp_dir"] == "zipformer/exp"


def test_pretrained_pt_needs_the_flags_no_shape_tells(reference, caplog):
    """pretrained.pt has weights only: num_heads comes from the flags (train.py's default
    otherwise, with a warning when the head sizes that gives are not train.py's)."""
    with caplog.at_level(logging.WARNING):
        default = import_icefall(PRETRAINED, BPE).checkpoint
    assert "pass num_heads=" in caplog.text and default["model_config"]["num_heads"] == [4, 4]
    result = import_icefall(PRETRAINED, BPE, {"num_heads": "2,2", "encoder_unmasked_dim": "8,8"},
                            chunk_size=16, left_context_frames=32)
    assert_gives_icefalls_outputs(result.checkpoint, reference)


def test_weights_that_do_not_fit_are_refused_naming_the_tensor_and_both_shapes(tmp_path):
    with pytest.raises(IcefallImportError) as e:
        import_icefall(EPOCH_2, BPE, {"cnn_module_kernel": "3,7"})
    message = str(e.value)
    assert message.count("\n") == 0
    assert message.endswith("epoch-2.pt: tensor encoder.encoders.1.encoder.layers.0.conv_module1.depthwise_conv."
                            "chunkwise_conv_scale has shape (2, 12, 5), but the model that its other tensors and the "
                            "flags {'cnn_module_kernel': '3,7'} describe expects (2, 12, 7)")

    state = dict(raw(PRETRAINED)["model"])
    state["joiner.decoder_proj.weight"] = torch.zeros(8, 9)  # a damaged file: one tensor of another shape
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(IcefallImportError, match=r"tensor joiner.decoder_proj.weight has shape \(8, 9\), but the "
                                                 r"model that its other tensors and the flags .* describe expects \(8, 8\)"):
        import_icefall(tmp_path / "damaged.pt", BPE, {"num_heads": "2,2"})

    del state["joiner.decoder_proj.weight"]
    torch.save(state, tmp_path / "incomplete.pt")
    with pytest.raises(IcefallImportError, match=r"has no tensor joiner.decoder_proj.weight, which the model .* "
                                                 r"needs with shape \(8, 8\)"):
        import_icefall(tmp_path / "incomplete.pt", BPE, {"num_heads": "2,2"})

    with pytest.raises(IcefallImportError, match=r"the encoder.encoders.1.\[encoder.\]layers|tensor encoder.encoders.1"):
        import_icefall(EPOCH_2, BPE, {"num_encoder_layers": "1,2"})


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_other_files_are_refused_with_one_clear_message(tmp_path):
    with pytest.raises(IcefallImportError, match="has 12 tokens, but the model's decoder.embedding.weight has 11 rows"):
        longer = tmp_path / "tokens.txt"
        longer.write_text(CHARS.read_text(encoding="utf-8") + "壬 11\n", encoding="utf-8")
        import_icefall(EPOCH_2, longer)
    conformer = {"encoder.encoders.0.layers.0.self_attn.in_proj.weight": torch.zeros(4, 4),
                 "decoder.embedding.weight": torch.zeros(11, 4)}
    torch.save({"model": conformer}, tmp_path / "conformer.pt")
    with pytest.raises(IcefallImportError, match="not a model of icefall's zipformer recipes"):
        import_icefall(tmp_path / "conformer.pt", BPE)
    with pytest.raises(IcefallImportError, match="not an epoch-N.pt or checkpoint-N.pt"):
        import_icefall(PRETRAINED, BPE, avg=2)
    with pytest.raises(IcefallImportError, match="avg=3 reaches before epoch 1"):
        import_icefall(EPOCH_2, BPE, use_averaged_model=True, avg=3)
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "jit_script.pt"))
    with pytest.raises(IcefallImportError, match="TorchScript export"):
        import_icefall(tmp_path / "jit_script.pt", BPE)


class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_file_with_a_pickled_payload_is_refused_before_it_runs(tmp_path):
    path, marker = tmp_path / "epoch-3.pt", tmp_path / "ran"
    torch.save({**raw(EPOCH_2), "extra": Payload(marker)}, path)
    with pytest.raises(IcefallImportError, match=r"\(io.open\).*it was not loaded"):
        import_icefall(path, BPE)
    assert not marker.exists()


def test_icefall_bpe_model_keeps_icefalls_ids_and_text():
    tokenizer = tokenizer_from_icefall(BPE)
    sp = spm.SentencePieceProcessor(model_file=str(BPE))
    assert tokenizer.tokens == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert tokenizer.tokens[:3] == ["<blk>", "<sos/eos>", "<unk>"] and tokenizer.unk_id == 2
    for text in ("bad cab dad", "abba  cab", "bad xyz cab"):
        assert tokenizer.encode([text]) == [sp.encode(text)]
        ids = sp.encode(text)
        # icefall's text is sp.decode(ids); ours leaves <unk> out (sentencepiece renders it as " ⁇ ")
        assert tokenizer.decode([ids]) == [" ".join(sp.decode(ids).replace("\u2047", " ").split())]


def test_icefall_char_table_with_disambiguation_symbols(tmp_path):
    table = tmp_path / "tokens.txt"
    table.write_text(CHARS.read_text(encoding="utf-8") + "#0 11\n#1 12\n", encoding="utf-8")  # as AISHELL's has
    tokenizer = tokenizer_from_icefall(table)
    assert tokenizer.vocab_size == 11 and tokenizer.unk_id == 2
    assert tokenizer.encode(["甲乙 丙丁子"]) == [[3, 4, 5, 6, 2]]
    assert tokenizer.decode([[3, 4, 2, 5]]) == ["甲乙丙"]
    bpe_table = tmp_path / "bpe_tokens.txt"
    bpe_table.write_text((FILES / "lang_bpe/tokens.txt").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(IcefallTokensError, match="multi-character tokens .*give the model's bpe.model"):
        tokenizer_from_icefall(bpe_table)


def test_written_checkpoint_and_tokenizer_dir_load_like_any_other(tmp_path):
    result = import_icefall(EPOCH_2, BPE, use_averaged_model=True)
    path = write_import(result, tmp_path / "imported")
    ckpt = load_checkpoint(path)  # our safe loader: plain data only
    model, tokenizer = model_from_checkpoint(ckpt)
    assert tokenizer.tokens == tokenizer_from_icefall(BPE).tokens
    assert (tmp_path / "imported/lang/tokenizer.json").is_file() and (tmp_path / "imported/lang/sentencepiece.model").is_file()
    assert ckpt["imported"]["file"] == "epoch-2.pt" and ckpt["imported"]["sizes_from"]["encoder_dim"]


def test_entry_point_takes_icefalls_comma_flags_and_prints_where_sizes_came_from(tmp_path, capsys):
    from omegaconf import OmegaConf

    from asr_recipes.bin import comma_lists, positional_checkpoint
    from asr_recipes.models.zipformer.icefall_shapes import ARCHITECTURE_FLAGS
    from tests.decoding.entry import run_entry

    conf = OmegaConf.load(Path(__file__).parents[2] / "conf/import_icefall.yaml")
    assert set(ARCHITECTURE_FLAGS) <= set(conf)  # every flag the importer takes can be given
    argv = comma_lists(positional_checkpoint(["import_icefall", str(PRETRAINED), f"tokens={BPE}",
                                              f"out_dir={tmp_path / 'out'}", "num_heads=2,2",
                                              "encoder_unmasked_dim=8,8", "chunk_size=16", "left_context_frames=32"]),
                       ARCHITECTURE_FLAGS)
    assert "num_heads=[2,2]" in argv
    run_entry("asr_recipes.bin.import_icefall", *argv[1:])
    out = capsys.readouterr().out
    assert "| num_heads | [2, 2] | flag |" in out and "| encoder_dim | [8, 12] | layers.0.norm.bias" in out
    ckpt = load_checkpoint(tmp_path / "out/imported.pt")
    assert ckpt["decoding"]["chunk_size"] == 8 and ckpt["model_config"]["num_heads"] == [2, 2]
    with pytest.raises(AssertionError, match="exited with import_icefall: .*no such file"):
        run_entry("asr_recipes.bin.import_icefall", f"checkpoint={tmp_path / 'none.pt'}", f"tokens={BPE}",
                  f"out_dir={tmp_path / 'x'}")

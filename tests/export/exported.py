"""Models for the export tests, made once per session: the tiny trained offline model
(tests/decoding/trained_exp.py, blank logit lowered by 2.5 so that it emits symbols), a tiny
causal model trained the same way with dynamic chunks, and tiny random Zipformers and
Conformers with CTC heads (random_checkpoint), each with its export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
from lhotse import load_manifest

from asr_recipes.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from asr_recipes.data.features import feature_config
from asr_recipes.data.tokenizer import UNK, load_tokenizer
from asr_recipes.models.build import ModelConfig, build_transducer
from asr_recipes.models.zipformer.config import ICEFALL_DECODER
from tests.decoding.trained_exp import MODEL, lower_blank_logit, trained_exp

CAUSAL = {**MODEL, "causal": True}
CHUNK, LEFT = 4, 8  # encoder frames: 160 ms chunks, 320 ms of attention cache
#: a tiny Zipformer with icefall's decoder (a learned blank embedding) and a CTC head; its front
#: end has 16 channels, so the streaming export pads sherpa-onnx's 128-channel embed_states
ZIPFORMER = dict(encoder="zipformer", encoder_dim=[16, 16, 24, 32, 24, 16], num_encoder_layers=[1, 2, 1, 1, 1, 1],
                 encoder_unmasked_dim=12, num_heads=[2, 2, 2, 4, 2, 2], query_head_dim=8, value_head_dim=4,
                 pos_head_dim=2, pos_dim=8, feedforward_dim=32, cnn_module_kernel=[7, 5, 5, 3, 5, 7],
                 embed_channels=[4, 8, 16], decoder_dim=32, joiner_dim=32, context_size=2, ctc_head=True,
                 **ICEFALL_DECODER)
ZIPFORMER_CHUNK, ZIPFORMER_LEFT = 4, 8  # encoder frames; the Zipformer's chunks are multiples of 4
_CACHE: dict = {}


def offline_checkpoint(corpus, tmp_path_factory) -> Path:
    """epoch-3.pt of the tiny trained model, blank logit lowered by 2.5 (it then emits symbols)."""
    if "offline" not in _CACHE:
        exp = trained_exp(corpus, tmp_path_factory, tmp_path_factory.mktemp("export_offline") / "exp")
        lower_blank_logit(exp, 2.5)
        _CACHE["offline"] = exp / "epoch-3.pt"
    return _CACHE["offline"]


def causal_checkpoint(corpus, tmp_path_factory) -> Path:
    """A tiny causal (streaming) model trained 3 short epochs with dynamic chunks."""
    if "causal" not in _CACHE:
        from asr_recipes.data.datamodule import DataModule
        from asr_recipes.training.distributed import DistInfo
        from asr_recipes.training.objective import ChunkTrainingConfig, LossConfig
        from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
        from tests.conftest import tiny_data_config

        exp = tmp_path_factory.mktemp("export_causal")
        tokenizer = load_tokenizer(corpus.lang)
        seed_everything(0)
        model = build_transducer(CAUSAL, tokenizer.vocab_size)
        cfg = TrainerConfig(exp_dir=str(exp), seed=0, num_epochs=3, save_every_n=1000, keep_last_k=0,
                            average_period=1, log_every_n=1000, validate=False, tensorboard=False,
                            progress_bar=False, loss=LossConfig(warm_step=4), optim=OptimConfig(lr=0.003),
                            chunk_training=ChunkTrainingConfig(max_chunk=8),
                            decoding={"method": "greedy_search", "max_sym_per_frame": 1, "chunk_size": CHUNK,
                                      "left_context": LEFT})
        cpu = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
        Trainer(cfg, model, CAUSAL, tokenizer, DataModule(tiny_data_config(corpus), tokenizer), cpu).fit()
        lower_blank_logit(exp, 2.5)
        _CACHE["causal"] = exp / "epoch-3.pt"
    return _CACHE["causal"]


def random_checkpoint(key: str, model_config: dict, corpus, tmp_path_factory, decoding: dict | None = None,
                      blank_bias: float = 0.0, ctc_blank_bias: float = 0.0) -> Path:
    """A checkpoint of an untrained model (the tiny corpus' tokenizer), every weight moved off
    its initial value (so that zero-initialised scales and icefall's learned blank embedding
    take part), with the joiner's blank bias set to ``blank_bias``, the CTC head's to
    ``ctc_blank_bias`` (the share of frames that emit a symbol) and its <unk> bias to -30 (our CTC searches never emit <unk>, sherpa-onnx's would)."""
    key = f"random-{key}"
    if key not in _CACHE:
        tokenizer = load_tokenizer(corpus.lang)
        cfg = ModelConfig.from_mapping(model_config).to_dict()
        torch.manual_seed(0)
        model = build_transducer(cfg, tokenizer.vocab_size)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g)).add_(0.1 * torch.randn(p.shape, generator=g))
            model.joiner.output_linear.bias[0] = blank_bias
            if model.ctc_head is not None:
                model.ctc_head.linear.bias[0] = ctc_blank_bias
                if UNK in tokenizer.tokens:
                    model.ctc_head.linear.bias[tokenizer.tokens.index(UNK)] = -30.0
        path = tmp_path_factory.mktemp(key) / "model.pt"
        save_checkpoint(path, {"model_config": cfg, "vocab_size": tokenizer.vocab_size,
                               "feature_dim": feature_config()["num_mel_bins"], "tokenizer": tokenizer.to_dict(),
                               "feature_config": feature_config(), "decoding": dict(decoding or {}),
                               "model": model.state_dict(), "model_avg": None}, update_latest=False)
        _CACHE[key] = path
    return _CACHE[key]


def exported(key: str, checkpoint: Path, tmp_path_factory, **options) -> Path:
    """The checkpoint exported once per session with ``options`` (int8 copies included)."""
    from asr_recipes.export.exporter import export_checkpoint

    key = f"export-{key}"
    if key not in _CACHE:
        out = tmp_path_factory.mktemp(f"onnx_{key}") / "onnx"
        export_checkpoint(load_checkpoint(checkpoint), out, source=str(checkpoint), int8=True, **options)
        _CACHE[key] = out
    return _CACHE[key]


def wav_files(corpus, tmp_dir: Path, count: int = 8) -> list[tuple[Path, np.ndarray]]:
    """The first ``count`` test-clean utterances of the tiny corpus as 16-bit 16 kHz WAV files
    (what sherpa-onnx's command line reads), with their samples as float32 in [-1, 1]."""
    recordings = load_manifest(corpus.manifests / "librispeech_recordings_test-clean.jsonl.gz")
    out = []
    for rec in list(recordings)[:count]:
        path = tmp_dir / f"{rec.id}.wav"
        if not path.exists():
            soundfile.write(path, rec.resample(16000).load_audio()[0], 16000, subtype="PCM_16")
        samples, _ = soundfile.read(path, dtype="float32")  # (S,) in [-1, 1]
        out.append((path, samples))
    return out


def zipformer_export(corpus, tmp_path_factory, causal: bool):
    """(checkpoint path, model, tokenizer, export dir) of the tiny random ZIPFORMER (CTC head
    included), offline or causal (streaming chunk ZIPFORMER_CHUNK, left context ZIPFORMER_LEFT)."""
    decoding = {"chunk_size": ZIPFORMER_CHUNK, "left_context": ZIPFORMER_LEFT} if causal else {}
    ckpt = random_checkpoint(f"zipformer-causal-{causal}", {**ZIPFORMER, "causal": causal}, corpus, tmp_path_factory,
                             decoding, blank_bias=1.0)
    out = exported(f"zipformer-causal-{causal}", ckpt, tmp_path_factory)
    model, tokenizer = model_from_checkpoint(load_checkpoint(ckpt))
    return ckpt, model, tokenizer, out

"""Models for the export tests, made once per session: the tiny trained offline model
(tests/decoding/trained_exp.py, blank logit lowered by 2.5 so that it emits symbols) and a tiny
causal model trained the same way with dynamic chunks, each with its export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
from lhotse import load_manifest

from asr_recipes.checkpoint import load_checkpoint
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from tests.decoding.trained_exp import MODEL, lower_blank_logit, trained_exp

CAUSAL = {**MODEL, "causal": True}
CHUNK, LEFT = 4, 8  # encoder frames: 160 ms chunks, 320 ms of attention cache
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

"""A streaming model must recognise chunk by chunk what it recognises with full context.

Trains a tiny causal Conformer with dynamic chunks on the tiny corpus until it transcribes its
training utterances (about a minute and a half on one CPU thread), then decodes the same
utterances with full context and with 160 ms / 320 ms chunks (the chunk mask, which equals the
chunk-by-chunk run: tests/models). Chunked WER and full-context WER come from the same
checkpoint, so the check does not depend on how fast the machine trains.

The regression it guards against: a streaming recipe whose model learned to emit an
utterance's first words from look-ahead it only has in long chunks (the decoder's
start-of-sentence prior does the rest). With the first 1500 steps here such a model reads its
training utterances almost perfectly with full context and makes several times more errors at
160 ms, almost all on the first word; trainer.chunk_training.speech_onset_rise removes it.
"""

import kaldialign
import pytest
import torch
from lhotse import load_manifest

from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.models.build import build_transducer
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import ChunkTrainingConfig, LossConfig
from asr_recipes.training.schedules import EdenConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything
from tests.conftest import tiny_data_config

MODEL = dict(d_model=32, num_heads=2, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.0, subsampling_channels=8,
             conv_norm="batch", decoder_dim=32, context_size=2, joiner_dim=32, causal=True)
CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
STEPS = 1500
#: chunked WER may exceed the full-context WER by this factor plus this many points (the tiny
#: training set has ~170 words: one word is 0.6 points)
FACTOR, POINTS = 2.0, 3.0


def word_error_rate(model, tokenizer, cuts, chunk_size: int) -> float:
    feats = [torch.from_numpy(c.load_features()) for c in cuts]
    lens = torch.tensor([f.size(0) for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (N, T, 80)
    search = make_search(model, DecodingOptions("greedy_search", max_sym_per_frame=1))
    with torch.inference_mode():
        enc, enc_lens = model.encode(x, lens, *((chunk_size, 64) if chunk_size else ()))
        results = search.search(enc, enc_lens)
    errors = words = 0
    for cut, result in zip(cuts, results):
        ref = cut.supervisions[0].text.split()
        errors += kaldialign.edit_distance(ref, tokenizer.decode([result.tokens])[0].split())["total"]
        words += len(ref)
    return 100 * errors / words


@pytest.mark.slow
def test_chunked_wer_stays_close_to_full_context_wer(tiny_corpus, tmp_path):
    torch.set_num_threads(1)  # the same arithmetic, so the same model, whatever the machine's cores
    tokenizer = load_tokenizer(tiny_corpus.lang)
    seed_everything(0)
    model = build_transducer(MODEL, tokenizer.vocab_size)
    cfg = TrainerConfig(
        exp_dir=str(tmp_path), seed=0, num_epochs=10_000, max_steps=STEPS, save_every_n=0, keep_last_k=0,
        average_period=1, log_every_n=500, validate=False, tensorboard=False, progress_bar=False,
        loss=LossConfig(warm_step=4, rnnt_type="modified"),
        optim=OptimConfig(lr=0.005, schedule=EdenConfig(base_lr=0.005, lr_epochs=1e6, warmup_batches=50)),
        chunk_training=ChunkTrainingConfig(full_context_prob=0.25, max_chunk=16, speech_onset_rise=1.0))
    data = DataModule(tiny_data_config(tiny_corpus, specaug={"enabled": False}), tokenizer)
    Trainer(cfg, model, MODEL, tokenizer, data, CPU).fit()
    model.eval()

    cuts = [c for c in load_manifest(tiny_corpus.fbank / "librispeech_cuts_train-clean-100.jsonl.gz")
            if "_sp" not in c.id]  # the utterances as spoken (not speed-perturbed copies)
    full = word_error_rate(model, tokenizer, cuts, 0)
    assert full < 5.0, f"the tiny model did not learn its training utterances (WER {full:.1f}%)"
    for chunk in (4, 8):  # 160 ms, 320 ms
        chunked = word_error_rate(model, tokenizer, cuts, chunk)
        assert chunked <= FACTOR * full + POINTS, (
            f"chunk {chunk}: WER {chunked:.1f}% against {full:.1f}% with full context")

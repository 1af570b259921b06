"""Word times of a trained model against boundaries known from synthesis, not from any model.

Utterances are words joined by known silences (asr_recipes.synth.word_gaps); a word
is its letters played as consecutive tone bursts (G 500 Hz, O 900 Hz, N 1600 Hz, F 2800 Hz,
70-120 ms each, pitch, length and level varying per "speaker"), so its boundaries are
sample counts and each letter has its own stretch of audio, as a phone has in speech. A
small transducer is trained on them here with the recipe's own trainer (about a minute on 2
CPU cores), then decoded with greedy and modified beam search on held-out "speakers":

- every recognised word's start lies within 120 ms (3 encoder frames) of the truth;
- every end lies after the true start and at most 120 ms after the true end. An end can
  be early by more: a transducer emits a word's last letters once it has recognised the
  word (asr_recipes.decoding.word_times), which this check allows and
  egs/mini/RESULTS.md measures on speech.

The model also trains a CTC head (loss.ctc_scale 0.2), and the hypotheses of every search
force-aligned on its posteriors (asr_recipes.decoding.ctc_align) time words on both sides:

- every start and every end lies within 120 ms (3 frames) of the truth, late ends included,
  and on average within 40 ms (1 frame). Measured when this test was written (``pytest -s``
  prints the summaries; the four searches gave the same words and spans): mean absolute
  error 29.5 ms at starts and 28.8 ms at ends (signed -29.5 / +28.6 ms), largest 66 ms;
  the transducer's own frames on the same model: ends 49.8 ms early on average.

Why tones: on 2 CPU cores a transducer needs several minutes before it uses the acoustics
of speech (small models trained for 1-4 minutes on espeak-ng words, offline or causal,
emitted a language-model guess on frame 0 for every input), while it learns tone letters
in about a minute. Speech is measured on the mini recipe's model (egs/mini/RESULTS.md).
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import CharTokenizer
from asr_recipes.decoding import DecodingOptions, decode
from asr_recipes.decoding.word_times import word_times
from asr_recipes.models.build import build_transducer
from asr_recipes.scoring.word_timing import boundary_errors, summarize
from asr_recipes.synth.corpus import Speaker
from asr_recipes.synth.sets import write_set
from asr_recipes.synth.word_gaps import gapped_items, reference_words
from asr_recipes.training.distributed import DistInfo
from asr_recipes.training.objective import LossConfig
from asr_recipes.training.schedules import EdenConfig
from asr_recipes.training.trainer import OptimConfig, Trainer, TrainerConfig, seed_everything

#: a "letter" is a tone burst at its frequency; a word plays its letters back to back
FREQUENCY = {"G": 500.0, "O": 900.0, "N": 1600.0, "F": 2800.0}
WORDS = ("GO", "NO", "ON", "FOG", "FONG")
MODEL = dict(d_model=64, num_heads=2, ff_dim=128, num_layers=2, kernel_size=7, dropout=0.0, subsampling_channels=8,
             conv_norm="batch", decoder_dim=64, context_size=2, joiner_dim=64, ctc_head=True)
TOLERANCE = 0.12  # s: 3 encoder frames
MEAN_TOLERANCE = 0.04  # s: 1 encoder frame, CTC-aligned times on average


def tone(word: str, speaker: Speaker) -> np.ndarray:
    """The word's letters as consecutive tone bursts; per speaker and letter the pitch
    (+-5%), length (70-120 ms) and level vary."""
    rng = random.Random(f"{word}/{speaker.speaker_id}")
    level = rng.uniform(0.2, 0.5)
    bursts = []
    for letter in word:
        t = np.arange(round(rng.uniform(0.07, 0.12) * SAMPLE_RATE)) / SAMPLE_RATE
        f = FREQUENCY[letter] * rng.uniform(0.95, 1.05)
        bursts.append(level * np.sin(2 * np.pi * f * t) * np.hanning(t.size) ** 0.2)
    return np.concatenate(bursts).astype(np.float32)


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def voices(first: int, n: int) -> list[Speaker]:
    return [Speaker(str(first + i), "tone", "tone", 0, 0) for i in range(n)]


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("tone_words")
    train, test = sentences(200, 0), sentences(16, 1)
    for part, texts, who, seed in (("train-tones", train, voices(100, 12), 0), ("test-tones", test, voices(200, 4), 1)):
        write_set(root, part, {"texts": texts, "seed": seed},
                  lambda texts=texts, who=who, seed=seed: gapped_items(texts, who, seed, prefix=part, render=tone))
    tokenizer = CharTokenizer.train(train, word_boundary=True)
    data = yaml.safe_load((Path(__file__).parents[2] / "conf/data/default.yaml").read_text())
    data.update(manifest_dir=str(root / "fbank"), corpus="librispeech", train_parts=["train-tones"],
                valid_parts=["test-tones"], test_parts=["test-tones"], num_workers=0, max_duration=12.0,
                specaug={"enabled": False})
    seed_everything(0)
    model = build_transducer(MODEL, tokenizer.vocab_size)
    cfg = TrainerConfig(exp_dir=str(root / "exp"), seed=0, num_epochs=30, save_every_n=10**6, keep_last_k=0,
                        average_period=1, log_every_n=100, validate=False, tensorboard=False, progress_bar=False,
                        loss=LossConfig(warm_step=100, ctc_scale=0.2),
                        optim=OptimConfig(lr=0.003, schedule=EdenConfig(warmup_batches=100, lr_batches=1000,
                                                                        lr_epochs=100)))
    cpu = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    Trainer(cfg, model, MODEL, tokenizer, DataModule(data, tokenizer), cpu).fit()
    return model.eval(), tokenizer, DataModule(data, tokenizer).test_dataloaders()["test-tones"], \
        reference_words(root, "test-tones")


def timing_errors(model, tokenizer, batches, truth, options):
    """Boundary errors of every recognised word (word times from the token spans when the
    results have them, else from the search's frames), and the number of reference words."""
    errors, words = [], 0
    for batch in batches:
        with torch.no_grad():
            enc, lens = model.encode(batch["features"], batch["feature_lens"])  # (N, T', D), (N,)
        for cut_id, result in zip(batch["cut_ids"], decode(model, enc, lens, options)):
            timed = word_times(tokenizer, result.tokens, result.timestamps, result.token_spans,
                               lookahead_frames=model.encoder.lookahead_frames)
            errors += boundary_errors(truth[cut_id], [(w.word, w.start, w.end) for w in timed])
            words += len(truth[cut_id])
    return errors, words


@pytest.mark.slow
@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_word_times_fall_within_three_frames_of_the_true_boundaries(tone_model, method):
    model, tokenizer, batches, truth = tone_model
    # the frames the transducer emitted the tokens on (not the CTC alignment)
    options = DecodingOptions(method, beam=4, max_sym_per_frame=3, timestamps="search")
    errors, words = timing_errors(model, tokenizer, batches, truth, options)
    summary = summarize(errors, words, TOLERANCE)
    print(summary.report())
    assert summary.matched >= 0.9 * words, summary.report()  # the model does recognise the words
    assert all(abs(e.start) <= TOLERANCE for e in errors), summary.report()
    assert all(e.end <= TOLERANCE for e in errors), summary.report()
    assert all(e.end > -e.duration for e in errors), summary.report()  # early, but after the true start


@pytest.mark.slow
@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search", "ctc_greedy_search",
                                    "ctc_prefix_beam_search"])
def test_ctc_aligned_word_times_fall_within_three_frames_on_both_sides(tone_model, method):
    model, tokenizer, batches, truth = tone_model
    options = DecodingOptions(method, beam=4, max_sym_per_frame=3, timestamps="ctc")
    errors, words = timing_errors(model, tokenizer, batches, truth, options)
    summary = summarize(errors, words, TOLERANCE)
    print(summary.report())
    assert summary.matched >= 0.9 * words, summary.report()
    assert all(abs(e.start) <= TOLERANCE and abs(e.end) <= TOLERANCE for e in errors), summary.report()
    assert summary.mean_abs_start <= MEAN_TOLERANCE and summary.mean_abs_end <= MEAN_TOLERANCE, summary.report()

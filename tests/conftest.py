"""Shared fixtures: a tiny synthesized corpus taken through the real data stages once per session."""

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # lhotse workers and torch in subprocesses


@dataclass(frozen=True)
class TinyCorpus:
    root: Path  # the --dl-dir: holds LibriSpeech/
    manifests: Path  # lhotse recordings/supervisions
    fbank: Path  # cuts with fbank features (librispeech_cuts_<part>.jsonl.gz)
    lang: Path  # saved char tokenizer
    parts: tuple = ("train-clean-100", "dev-clean", "test-clean")
    noise_parts: tuple = ("noise", "speech")  # generated noise (musan_cuts_<part> in fbank)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> TinyCorpus:
    """24 synthesized utterances per split in the LibriSpeech layout and the generated noise,
    prepared with the library's own stages (prepare -> fbank -> char tokenizer). Needs
    espeak-ng, flite and sox."""
    from asr_recipes.data.corpora import get_corpus
    from asr_recipes.synth.corpus import synthesize_librispeech_layout
    from asr_recipes.data.features import compute_fbank
    from asr_recipes.data.tokenizer import ensure_tokenizer

    root = tmp_path_factory.mktemp("tiny_corpus")
    corpus = TinyCorpus(root=root / "download", manifests=root / "manifests", fbank=root / "fbank",
                        lang=root / "lang")
    synthesize_librispeech_layout(corpus.root, task="commands", size=24, seed=0, num_jobs=2)
    get_corpus("librispeech").prepare(corpus.root, corpus.manifests, list(corpus.parts))
    compute_fbank(corpus.manifests, "librispeech", list(corpus.parts), corpus.fbank, num_jobs=1)
    musan = get_corpus("musan")
    musan.prepare(corpus.root, corpus.manifests, list(corpus.noise_parts))
    compute_fbank(corpus.manifests, "musan", list(corpus.noise_parts), corpus.fbank, cut_window=musan.cut_window)
    ensure_tokenizer(corpus.manifests / "librispeech_supervisions_train-clean-100.jsonl.gz", corpus.lang,
                     kind="char", vocab_size=None)
    return corpus


def tiny_data_config(corpus: TinyCorpus, **overrides) -> dict:
    """conf/data/default.yaml pointed at the tiny corpus, without worker processes."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "conf/data/default.yaml").read_text())
    cfg.update(manifest_dir=str(corpus.fbank), corpus="librispeech", train_parts=["train-clean-100"],
               valid_parts=["dev-clean"], test_parts=["test-clean"], num_workers=0, max_duration=12.0)
    cfg.update(overrides)
    return cfg

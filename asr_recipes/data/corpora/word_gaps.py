"""Utterances with known word boundaries: ground truth for word timestamps that no model
produced.

Every word is synthesized on its own (espeak-ng + sox, asr_recipes.data.corpora.
synthetic_sets.speak), trimmed to its speech (first to last sample above 1% of its peak),
and the words of an utterance are joined with digital silence: a leading and a trailing
silence drawn from ``edges`` seconds, a gap drawn from ``gaps`` between words. Each word's start
and end are therefore sample counts, stored as the supervision's ``alignment["word"]``.

    python -m asr_recipes.data.corpora.word_gaps build OUT_DIR [--task commands] [--num 100]
    python -m asr_recipes.bin.decode ... data.manifest_dir=OUT_DIR/fbank "data.test_parts=[word-gaps]"
    python -m asr_recipes.data.corpora.word_gaps score OUT_DIR E/<method>/ctm-word-gaps-<key>.ctm

(``score`` also takes the JSON lines of ``bin.transcribe --timestamps`` on OUT_DIR/audio/word-gaps/*.wav.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from lhotse import load_manifest

from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.data.corpora.synthetic import Speaker
from asr_recipes.data.corpora.synthetic_sets import Item, speak, speakers, trim, write_set
from asr_recipes.data.corpora.synthetic_text import GRAMMARS, sample_sentences
from asr_recipes.data.manifests import manifest_path
from asr_recipes.scoring.ctm import read_ctm
from asr_recipes.scoring.word_timing import boundary_errors, summarize

PART = "word-gaps"


def gapped_items(sentences: Sequence[str], voices: Sequence[Speaker], seed: int,
                 gaps: tuple[float, float] = (0.15, 0.6), edges: tuple[float, float] = (0.2, 0.6),
                 prefix: str = "gaps") -> list[Item]:
    """One Item per sentence (round-robin over ``voices``), words joined by silences of
    ``gaps`` seconds, leading and trailing silences of ``edges`` seconds (uniform, seeded),
    with their true (word, start s, end s)."""
    rng = random.Random(f"word-gaps/{seed}")

    def silence(span: tuple[float, float]) -> np.ndarray:
        return np.zeros(round(rng.uniform(*span) * SAMPLE_RATE), dtype=np.float32)

    spoken: dict[tuple[str, str], np.ndarray] = {}  # a word is synthesized once per speaker
    items = []
    for n, sentence in enumerate(sentences):
        speaker = voices[n % len(voices)]
        pieces = [silence(edges)]
        start, words = len(pieces[0]), []
        for i, word in enumerate(sentence.split()):
            if i:
                pieces.append(silence(gaps))
                start += len(pieces[-1])
            key = (word, speaker.speaker_id)
            if key not in spoken:
                spoken[key] = trim(speak(word, speaker))
            pieces.append(spoken[key])
            words.append((word, start / SAMPLE_RATE, (start + len(spoken[key])) / SAMPLE_RATE))
            start += len(spoken[key])
        pieces.append(silence(edges))
        items.append(Item(f"{prefix}-{speaker.speaker_id}-{n:04d}", " ".join(sentence.split()), speaker.speaker_id,
                          np.concatenate(pieces), tuple(words)))
    return items


def build(out_dir: str | Path, task: str = "commands", num: int = 100, seed: int = 0, num_speakers: int = 8,
          part: str = PART, corpus: str = "librispeech") -> Path:
    """``num`` test-split sentences of the synthetic ``task`` grammar (words the task's
    models know, sentences they never heard), spoken word by word by held-out voices."""
    sentences = sample_sentences(GRAMMARS[task], "test", num, seed)
    voices = speakers("heldout", num_speakers, seed)
    plan = {"kind": "word-gaps", "sentences": sentences, "voices": [list(v.__dict__.values()) for v in voices],
            "seed": seed}
    return write_set(out_dir, part, plan, lambda: gapped_items(sentences, voices, seed), corpus)


def reference_words(out_dir: str | Path, part: str = PART, corpus: str = "librispeech") -> dict:
    """{utterance id: [(word, start s, end s)]} from the part's supervisions."""
    sups = load_manifest(manifest_path(Path(out_dir) / "manifests", corpus, "supervisions", part))
    return {s.id: [(a.symbol, a.start, a.end) for a in s.alignment["word"]] for s in sups}


def read_hypothesis(path: str | Path) -> dict:
    """{utterance id: [(word, start, end)]} from a CTM file or transcribe --timestamps JSON
    lines (the id is the audio file's name without suffix)."""
    path = Path(path)
    if path.suffix == ".ctm":
        return read_ctm(path)
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        out[Path(record["file"]).stem] = [(w["word"], w["start"], w["end"]) for w in record["words"]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_recipes.data.corpora.word_gaps", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="synthesize the set (audio, manifests, fbank cuts)")
    b.add_argument("out_dir")
    b.add_argument("--task", default="commands", choices=sorted(GRAMMARS))
    b.add_argument("--num", type=int, default=100)
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="word boundary errors of a CTM / transcribe JSON lines against the truth")
    s.add_argument("out_dir")
    s.add_argument("hypothesis")
    s.add_argument("--tolerance-ms", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.out_dir, args.task, args.num, args.seed))
        return 0
    refs, hyps = reference_words(args.out_dir), read_hypothesis(args.hypothesis)
    missing = sorted(set(refs) - set(hyps))
    if missing:
        print(f"word_gaps: {len(missing)} utterances have no hypothesis, e.g. {missing[:3]}", file=sys.stderr)
    errors = [e for utt in sorted(set(refs) & set(hyps)) for e in boundary_errors(refs[utt], hyps[utt])]
    print(summarize(errors, sum(len(r) for r in refs.values()), args.tolerance_ms / 1000).report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

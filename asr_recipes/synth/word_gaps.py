"""Utterances with known word boundaries: ground truth for word timestamps that no model
produced.

Every word is synthesized on its own (espeak-ng + sox, asr_recipes.data.corpora.
sets.speak), trimmed to its speech (first to last sample above 1% of its peak),
and the words of an utterance are joined with silence: a gap drawn from ``gaps`` seconds
between words, and before the first and after the last word silences drawn from ``lead``
and ``tail``; a faint Gaussian noise floor (``noise``, 80 dB below full scale) covers the
whole file, as a microphone's would, instead of digital zeros. The default lead and tail
are what espeak-ng leaves around a sentence (10-60 ms before, 250-450 ms after), i.e.
what the synthetic training corpora have: the mini model, which never heard a longer
leading silence, emits its first token on encoder frame 0 whatever the lead (see
egs/mini/RESULTS.md), so longer leads measure that habit rather than word timing. Each word's start
and end are therefore sample counts, stored as the supervision's ``alignment["word"]``.

    python -m asr_recipes.synth.word_gaps build OUT_DIR [--task commands] [--num 100]
    python -m asr_recipes.bin.decode ... data.manifest_dir=OUT_DIR/fbank "data.test_parts=[word-gaps]"
    python -m asr_recipes.synth.word_gaps score OUT_DIR E/<method>/ctm-word-gaps-<key>.ctm

(``score`` also takes the JSON lines of ``bin.transcribe --timestamps`` on OUT_DIR/audio/word-gaps/*.wav.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from lhotse import load_manifest

from asr_recipes.constants import SAMPLE_RATE
from asr_recipes.data.manifests import manifest_path
from asr_recipes.scoring.ctm import read_ctm
from asr_recipes.scoring.word_timing import boundary_errors, summarize
from asr_recipes.synth.corpus import Speaker
from asr_recipes.synth.sets import Item, speak, speakers, trim, write_set
from asr_recipes.synth.text import GRAMMARS, sample_sentences

PART = "word-gaps"


def gapped_items(sentences: Sequence[str], voices: Sequence[Speaker], seed: int,
                 gaps: tuple[float, float] = (0.15, 0.6), lead: tuple[float, float] = (0.01, 0.06),
                 tail: tuple[float, float] = (0.25, 0.45), noise: float = 1e-4, prefix: str = "gaps",
                 render: Callable[[str, Speaker], np.ndarray] = speak) -> list[Item]:
    """One Item per sentence (round-robin over ``voices``), words joined by silences of
    ``gaps`` seconds, with ``lead`` and ``tail`` seconds of silence around them (uniform,
    seeded), with their true (word, start s, end s). ``render(word, speaker)`` gives a
    word's (S,) samples at SAMPLE_RATE (default: espeak-ng), trimmed here."""
    rng = random.Random(f"word-gaps/{seed}")
    floor = np.random.default_rng(seed)

    def silence(span: tuple[float, float]) -> np.ndarray:
        return np.zeros(round(rng.uniform(*span) * SAMPLE_RATE), dtype=np.float32)

    spoken: dict[tuple[str, str], np.ndarray] = {}  # a word is synthesized once per speaker
    items = []
    for n, sentence in enumerate(sentences):
        speaker = voices[n % len(voices)]
        pieces = [silence(lead)]
        start, words = len(pieces[0]), []
        for i, word in enumerate(sentence.split()):
            if i:
                pieces.append(silence(gaps))
                start += len(pieces[-1])
            key = (word, speaker.speaker_id)
            if key not in spoken:
                spoken[key] = trim(render(word, speaker))
            pieces.append(spoken[key])
            words.append((word, start / SAMPLE_RATE, (start + len(spoken[key])) / SAMPLE_RATE))
            start += len(spoken[key])
        pieces.append(silence(tail))
        audio = np.concatenate(pieces)
        audio += (noise * floor.standard_normal(audio.size)).astype(np.float32)
        items.append(Item(f"{prefix}-{speaker.speaker_id}-{n:04d}", " ".join(sentence.split()), speaker.speaker_id,
                          audio, tuple(words)))
    return items


def build(out_dir: str | Path, task: str = "commands", num: int = 100, seed: int = 0, num_speakers: int = 8,
          part: str = PART, lead: tuple[float, float] = (0.01, 0.06), split: str = "test", noise: float = 1e-4,
          gaps: tuple[float, float] = (0.15, 0.6), corpus: str = "librispeech") -> Path:
    """``num`` sentences of the synthetic ``task`` grammar's ``split`` (test or dev: words
    the task's models know, sentences they never heard), spoken word by word by held-out
    voices."""
    sentences = sample_sentences(GRAMMARS[task], split, num, seed)
    voices = speakers("heldout", num_speakers, seed)
    plan = {"kind": "word-gaps", "sentences": sentences, "voices": [list(v.__dict__.values()) for v in voices],
            "seed": seed, "lead": list(lead), "split": split, "noise": noise, "gaps": list(gaps)}
    return write_set(out_dir, part, plan, lambda: gapped_items(sentences, voices, seed, gaps, lead=lead, noise=noise),
                     corpus)


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
    parser = argparse.ArgumentParser(prog="python -m asr_recipes.synth.word_gaps", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="synthesize the set (audio, manifests, fbank cuts)")
    b.add_argument("out_dir")
    b.add_argument("--task", default="commands", choices=sorted(GRAMMARS))
    b.add_argument("--num", type=int, default=100)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--part", default=PART)
    b.add_argument("--gaps", type=float, nargs=2, default=(0.15, 0.6), metavar=("MIN", "MAX"),
                   help="seconds of silence between words")
    b.add_argument("--noise", type=float, default=1e-4, help="noise floor (standard deviation, full scale = 1)")
    b.add_argument("--split", default="test", choices=["test", "dev"], help="grammar split the sentences come from")
    b.add_argument("--lead", type=float, nargs=2, default=(0.01, 0.06), metavar=("MIN", "MAX"),
                   help="seconds of silence before the first word (default: espeak-ng's own, 0.01 0.06)")
    s = sub.add_parser("score", help="word boundary errors of a CTM / transcribe JSON lines against the truth")
    s.add_argument("out_dir")
    s.add_argument("hypothesis")
    s.add_argument("--part", default=PART)
    s.add_argument("--tolerance-ms", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.out_dir, args.task, args.num, args.seed, part=args.part, lead=tuple(args.lead), split=args.split, noise=args.noise, gaps=tuple(args.gaps)))
        return 0
    refs, hyps = reference_words(args.out_dir, args.part), read_hypothesis(args.hypothesis)
    missing = sorted(set(refs) - set(hyps))
    if missing:
        print(f"word_gaps: {len(missing)} utterances have no hypothesis, e.g. {missing[:3]}", file=sys.stderr)
    errors = [e for utt in sorted(set(refs) & set(hyps)) for e in boundary_errors(refs[utt], hyps[utt])]
    print(summarize(errors, sum(len(r) for r in refs.values()), args.tolerance_ms / 1000).report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

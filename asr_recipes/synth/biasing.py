"""A hotword biasing test set: sentences of a synthetic task with a word that no sentence
of the task has (place names), spoken by held-out voices, plus sentences without one.

Each sentence of part ``biasing-hot`` is a test-split sentence of the task's grammar
(asr_recipes.synth.text; with the corpus' ``seed``, so never a training
sentence) with one word, at a seeded position, replaced by one of HOTWORDS (each used
equally often); ``biasing-plain`` holds other test-split sentences, unchanged, by the same
held-out speakers. The draws skip the first SKIP test sentences (the mini corpus' own
test-clean), so neither part repeats test-clean's list. ``hotwords.txt`` lists the names, one per line.

    python -m asr_recipes.synth.biasing OUT_DIR [--task commands] [--num 200]
    python -m asr_recipes.bin.decode experiment=mini exp_dir=E ... "methods=[modified_beam_search]" \\
        data.manifest_dir=OUT_DIR/fbank "data.test_parts=[biasing-hot,biasing-plain]" \\
        hotwords_file=OUT_DIR/hotwords.txt hotwords_score=1.5   # hotwords_score=0: no biasing, recall still counted

Names are checked against every synthetic grammar's vocabulary (none may occur in any
training corpus these recipes synthesize); a task uses the names spellable with its own
letters (a character model has no token for a letter its corpus never had: ``commands``
lacks J and Q, ``sentences`` lacks Z, so ZANZIBAR is left out there).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from asr_recipes.atomic_files import write_atomic
from asr_recipes.synth.sets import Item, speak, speakers, write_set
from asr_recipes.synth.text import GRAMMARS, sample_sentences

HOT_PART, PLAIN_PART = "biasing-hot", "biasing-plain"
HOTWORDS_FILE = "hotwords.txt"
SKIP = 200
#: place names, none in any synthetic grammar, no J or Q
HOTWORDS = ("ZANZIBAR", "TIMBUKTU", "KATHMANDU", "NAIROBI", "HELSINKI", "LISBON", "MONTEVIDEO", "MARRAKESH",
            "SAMARKAND", "HONOLULU", "WINNIPEG", "EDINBURGH", "ACAPULCO", "CASABLANCA", "MANDALAY", "BUDAPEST",
            "VLADIVOSTOK", "ANCHORAGE", "PORTSMOUTH", "SANTIAGO")


def check_hotwords(hotwords: tuple[str, ...] = HOTWORDS) -> None:
    seen = {w for g in GRAMMARS.values() for w in g.vocabulary()}
    clash = sorted(set(hotwords) & seen)
    if clash:
        raise ValueError(f"hotwords {clash} occur in a synthetic grammar; choose names no corpus has")


def task_hotwords(task: str) -> tuple[str, ...]:
    """The HOTWORDS whose letters all occur in the task's vocabulary."""
    check_hotwords()
    letters = {c for w in GRAMMARS[task].vocabulary() for c in w}
    return tuple(w for w in HOTWORDS if set(w) <= letters)


def sentences(task: str, num: int, seed: int) -> tuple[list[str], list[str]]:
    """(num sentences with one hotword each, num sentences without), deterministic in seed."""
    names = task_hotwords(task)
    pool = sample_sentences(GRAMMARS[task], "test", SKIP + 2 * num, seed)[SKIP:]
    rng = random.Random(f"biasing/{seed}")
    hot = []
    for n, sentence in enumerate(pool[:num]):
        words = sentence.split()
        words[rng.randrange(len(words))] = names[n % len(names)]
        hot.append(" ".join(words))
    return hot, pool[num:]


def build(out_dir: str | Path, task: str = "commands", num: int = 200, seed: int = 0, num_speakers: int = 8,
          corpus: str = "librispeech") -> Path:
    """Write both parts and the hotwords file under out_dir; returns the hotwords file."""
    out_dir = Path(out_dir)
    hot, plain = sentences(task, num, seed)
    voices = speakers("heldout", num_speakers, seed)
    for part, texts in ((HOT_PART, hot), (PLAIN_PART, plain)):
        plan = {"kind": part, "sentences": texts, "voices": [list(v.__dict__.values()) for v in voices]}

        def items(texts=texts, part=part):
            return [Item(f"{part}-{voices[n % len(voices)].speaker_id}-{n:04d}", text,
                         voices[n % len(voices)].speaker_id, speak(text, voices[n % len(voices)]))
                    for n, text in enumerate(texts)]

        write_set(out_dir, part, plan, items, corpus)
    return write_atomic(out_dir / HOTWORDS_FILE, "".join(f"{w}\n" for w in task_hotwords(task)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_recipes.synth.biasing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--task", default="commands", choices=sorted(k for k in GRAMMARS if k != "mandarin"))
    parser.add_argument("--num", type=int, default=200, help="utterances per part")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.out_dir, args.task, args.num, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Transcribe audio files: ``python -m asr_recipes.bin.transcribe CHECKPOINT AUDIO [AUDIO ...]
[--method greedy_search] [--beam 4] [--max-sym-per-frame 1] [--device auto]``.

Prints ``<path>\\t<text>`` per readable file, in the order given; each unreadable or missing
file gets one line on stderr naming it, the others are still transcribed, and the exit
status is 1 if any file failed (2 for an unusable checkpoint or bad options).

Not Hydra, unlike the other entry points: the input is a list of arbitrary file paths
(positional, shell-globbed, possibly containing '=' or spaces), which Hydra's key=value
overrides cannot express, and there is no recipe configuration to compose.
"""

from __future__ import annotations

import argparse
import sys

from asr_recipes.decoding import DecodingOptions, make_search, search_methods
from asr_recipes.decoding.checkpoints import model_from_checkpoint
from asr_recipes.training.distributed import resolve_device
from asr_recipes.decoding.transcribe import check_feature_config, transcribe_files
from asr_recipes.training.checkpoint import CheckpointError, load_checkpoint


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m asr_recipes.bin.transcribe", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by the train or average stage (e.g. "
                                           "exp/averaged-epoch-30-avg-10.pt)")
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, ...; any sample rate)")
    parser.add_argument("--method", default="greedy_search", choices=search_methods())
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--max-sym-per-frame", type=int, default=1,
                        help="raise for character tokens (several letters per 40 ms encoder frame)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=8, help="files decoded together")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = DecodingOptions(method=args.method, beam=args.beam, max_sym_per_frame=args.max_sym_per_frame)
        device = resolve_device(args.device)
        ckpt = load_checkpoint(args.checkpoint)
        check_feature_config(ckpt)
        model, tokenizer = model_from_checkpoint(ckpt, device)
    except (CheckpointError, ValueError) as e:
        print(f"transcribe: {e}", file=sys.stderr)
        return 2
    del ckpt
    failed = 0
    search = make_search(model, options)
    for path, text, error in transcribe_files(model, tokenizer, search, args.audio, device, args.batch_size):
        if error is None:
            print(f"{path}\t{text}", flush=True)
        else:
            failed += 1
            print(f"transcribe: {error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

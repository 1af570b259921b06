"""Transcribe audio files: ``python -m asr_recipes.bin.transcribe CHECKPOINT AUDIO [AUDIO ...]
[--method M] [--beam B] [--max-sym-per-frame K] [--blank-penalty P] [--hotwords-file F
[--hotwords-score S]] [--lm LM --lm-scale S [--lodr-bigram B --lodr-scale S] [--lm-rescore]]
[--timestamps [--time-source auto|ctc|search]] [--nbest N] [--streaming [--chunk-ms 320]
[--left-context-ms 2560] [--realtime]] [--device auto]``.

Prints ``<path>\\t<text>`` per readable file, in the order given (with --timestamps or
--nbest: one JSON object per line instead, {"file", "text", "words": [{"word", "start",
"end"}], "tokens": [{"token", "frame", "time"}], "nbest": [{"score", "log_prob", "hotword_bonus",
"lm_score", "num_tokens", "text"}]}, times in seconds as asr_recipes.decoding.word_times defines
them); each unreadable or missing file gets one line on stderr naming it, the others are
still transcribed, and the exit status is 1 if any file failed (2 for an unusable checkpoint
or bad options). Search settings default to what the checkpoint records (the recipe's
decoding settings).

--lm (modified_beam_search): an RNN-LM (asr_recipes.bin.train_lm) over the model's tokenizer,
fused at every token with --lm-scale (or, with --lm-rescore, applied to the final beam), and a
LODR bigram (asr_recipes.bin.token_bigram) subtracted with --lodr-scale; as bin.decode's lm=,
lm_scale=, lodr_bigram=, lodr_scale=, lm_rescore= (asr_recipes.decoding.lm_fusion). With
--streaming each hypothesis carries its LM state from chunk to chunk.

--streaming (streaming models): each file is fed in pieces of --chunk-ms as live audio
would arrive and decoded chunk by chunk; the growing transcript is shown on stderr (one
updating line on a terminal, a "partial" line per change otherwise), the final one on
stdout, and a line per file reports the compute time per piece. --realtime paces the
pieces at real time, so the partials appear as a live user would see them.

Not Hydra, unlike the other entry points: the input is a list of arbitrary file paths
(positional, shell-globbed, possibly containing '=' or spaces), which Hydra's key=value
overrides cannot express, and there is no recipe configuration to compose.
"""

from __future__ import annotations

import argparse
import json
import sys

from asr_recipes.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from asr_recipes.decoding import make_search, search_methods
from asr_recipes.decoding.hotwords import DEFAULT_SCORE, HotwordsError, read_hotwords
from asr_recipes.decoding.lm_fusion import check_vocabulary
from asr_recipes.decoding.options import TIMESTAMP_SOURCES
from asr_recipes.decoding.settings import resolve
from asr_recipes.decoding.streaming import StreamingRecognizer
from asr_recipes.decoding.transcribe import (
    AudioError, check_feature_config, load_audio, result_record, transcribe_files, transcribe_streaming,
)
from asr_recipes.training.distributed import resolve_device

ENCODER_FRAME_MS = 40


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m asr_recipes.bin.transcribe", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by the train or average stage (e.g. "
                                           "exp/averaged-epoch-30-avg-10.pt)")
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, ...; any sample rate)")
    recorded = " (default: the checkpoint's recorded setting)"
    parser.add_argument("--method", default=None, choices=search_methods(), help="search method" + recorded)
    parser.add_argument("--beam", type=int, default=None, help="beam width" + recorded)
    parser.add_argument("--max-sym-per-frame", type=int, default=None,
                        help="symbols per 40 ms encoder frame; character tokens may need several" + recorded)
    parser.add_argument("--blank-penalty", type=float, default=None,
                        help="subtracted from the blank logit (> 0: fewer deletions)" + recorded)
    parser.add_argument("--hotwords-file", default=None,
                        help="phrases to favour (modified_beam_search), one per line with an optional ' :score'")
    parser.add_argument("--hotwords-score", type=float, default=DEFAULT_SCORE,
                        help="bonus per matched token for phrases without their own score (default %(default)s)")
    parser.add_argument("--lm", default=None, help="an RNN-LM checkpoint (asr_recipes.bin.train_lm) for "
                                                   "modified_beam_search; needs --lm-scale")
    parser.add_argument("--lm-scale", type=float, default=None, help="weight of the LM's log-probability, e.g. 0.3")
    parser.add_argument("--lodr-bigram", default=None,
                        help="the training transcripts' token bigram (asr_recipes.bin.token_bigram); needs --lodr-scale")
    parser.add_argument("--lodr-scale", type=float, default=None,
                        help="weight of the bigram's log-probability, subtracted (LODR), e.g. 0.2")
    parser.add_argument("--lm-rescore", action="store_true",
                        help="apply the LM to the final beam only (n-best rescoring) instead of at every token")
    parser.add_argument("--timestamps", action="store_true",
                        help="print JSON lines with word and token times (seconds); from the CTC head's forced "
                             "alignment when the model has one")
    parser.add_argument("--time-source", default=None, choices=TIMESTAMP_SOURCES,
                        help="where word times come from: auto (CTC alignment if the model has a CTC head, else "
                             "the search's frames), ctc or search" + recorded)
    parser.add_argument("--nbest", type=int, default=None,
                        help="print JSON lines with the N best hypotheses and their scores (beam methods)")
    parser.add_argument("--streaming", action="store_true", help="decode chunk by chunk (streaming models)")
    parser.add_argument("--chunk-ms", type=int, default=None,
                        help=f"streaming chunk, a multiple of {ENCODER_FRAME_MS} ms" + recorded)
    parser.add_argument("--left-context-ms", type=int, default=None,
                        help=f"streaming attention left context, a multiple of {ENCODER_FRAME_MS} ms" + recorded)
    parser.add_argument("--realtime", action="store_true", help="with --streaming: feed audio at real-time pace")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=8, help="files decoded together (not streaming)")
    args = parser.parse_args(argv)
    for name in ("chunk_ms", "left_context_ms"):
        value = getattr(args, name)
        if value is not None and (value < 0 or value % ENCODER_FRAME_MS):
            parser.error(f"--{name.replace('_', '-')} must be a non-negative multiple of {ENCODER_FRAME_MS} ms "
                         f"(one encoder frame), got {value}")
    if args.realtime and not args.streaming:
        parser.error("--realtime paces streaming input: add --streaming")
    if (args.lm is None) != (args.lm_scale is None):
        parser.error("--lm and --lm-scale go together: give both or neither")
    if (args.lodr_bigram is None) != (args.lodr_scale is None):
        parser.error("--lodr-bigram and --lodr-scale go together: give both or neither")
    if args.lm_rescore and not (args.lm or args.lodr_bigram):
        parser.error("--lm-rescore needs --lm")
    return args


def _frames(ms: int | None) -> int | None:
    return None if ms is None else ms // ENCODER_FRAME_MS


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        ckpt = load_checkpoint(args.checkpoint)
        check_feature_config(ckpt)
        model, tokenizer = model_from_checkpoint(ckpt, device, args.checkpoint)
        hotwords = read_hotwords(args.hotwords_file, tokenizer, args.hotwords_score) if args.hotwords_file else []
        settings = resolve(ckpt, method=args.method, beam=args.beam, max_sym_per_frame=args.max_sym_per_frame,
                           blank_penalty=args.blank_penalty, chunk_size=_frames(args.chunk_ms),
                           left_context=_frames(args.left_context_ms), streaming=args.streaming,
                           hotwords=tuple(h.option for h in hotwords), nbest=args.nbest,
                           timestamps=args.time_source, encoder=model.encoder,
                           lm=dict(lm=args.lm, lm_scale=args.lm_scale, lodr_bigram=args.lodr_bigram,
                                   lodr_scale=args.lodr_scale, lm_rescore=args.lm_rescore or None))
        check_vocabulary(settings.options(), tokenizer.tokens, device)  # reads the LM, which the search reuses
        search = make_search(model, settings.options())
    except (CheckpointError, HotwordsError, ValueError) as e:
        print(f"transcribe: {e}", file=sys.stderr)
        return 2
    del ckpt
    output = Output(tokenizer, args.timestamps, args.nbest, model.encoder.lookahead_frames)
    if args.streaming:
        recognizer = StreamingRecognizer(model, search, settings.chunk.chunk_size, settings.chunk.left_context, device)
        return _stream_files(recognizer, tokenizer, args.audio, settings.chunk.chunk_size * ENCODER_FRAME_MS,
                             args.realtime, output)
    failed = 0
    # a causal model decoded whole still uses its chunk mask: what it would output streaming
    chunk = (settings.chunk.chunk_size, settings.chunk.left_context) if settings.chunk else ()
    for path, result, error in transcribe_files(model, tokenizer, search, args.audio, device, args.batch_size, chunk):
        if error is None:
            print(output.line(path, result), flush=True)
        else:
            failed += 1
            print(f"transcribe: {error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


class Output:
    """One stdout line per file: ``path<TAB>text``, or a JSON object (--timestamps, --nbest)."""

    def __init__(self, tokenizer, timestamps: bool, nbest: int | None, lookahead_frames: int):
        self.tokenizer, self.timestamps, self.nbest = tokenizer, timestamps, nbest
        self.lookahead_frames = lookahead_frames  # the encoder's, for word ends

    def line(self, path: str, result) -> str:
        if not self.timestamps and self.nbest is None:
            return f"{path}\t{self.tokenizer.decode([result.tokens])[0]}"
        record = result_record(path, result, self.tokenizer, self.timestamps, self.nbest,
                               lookahead_frames=self.lookahead_frames)
        return json.dumps(record, ensure_ascii=False)


def _stream_files(recognizer: StreamingRecognizer, tokenizer, paths: list[str], piece_ms: int, realtime: bool,
                  output: Output) -> int:
    terminal = sys.stderr.isatty()
    failed = 0
    for path in paths:
        try:
            samples = load_audio(path, recognizer.model.encoder.min_input_frames())
        except AudioError as e:
            failed += 1
            print(f"transcribe: {e}", file=sys.stderr, flush=True)
            continue

        def show(text: str, path=path) -> None:
            if terminal:  # one line, rewritten in place
                print(f"\r{path}: {text}\x1b[K", end="", file=sys.stderr, flush=True)
            else:
                print(f"partial\t{path}\t{text}", file=sys.stderr, flush=True)

        report = transcribe_streaming(recognizer, tokenizer, samples, piece_ms, realtime, show)
        if terminal:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
        print(output.line(path, report.result), flush=True)
        print(f"transcribe: {path}: {report.summary(piece_ms)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

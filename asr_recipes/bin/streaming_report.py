"""Streaming accuracy and latency: ``python -m asr_recipes.bin.streaming_report CKPT
reference=OFFLINE_CKPT experiment=<recipe> [parts=[test-clean]] [chunk_sizes=[4,8,16]] [out=FILE]``.

Each test utterance is decoded alone as a live stream, chunk by chunk, per chunk size and
search method; the table gives WER, compute per chunk (mean, max) and RTF on this machine,
and the emission delay of correctly recognized words (mean, 90th percentile) against the
reference alignment of an offline model (asr_recipes.decoding.latency). CKPT may also be
passed as checkpoint=PATH.
"""

import logging
import sys
from datetime import datetime
from pathlib import Path

import hydra
import kaldialign
import torch
from omegaconf import DictConfig, OmegaConf

from asr_recipes.atomic_files import write_atomic
from asr_recipes.bin import CONFIG_PATH, positional_checkpoint
from asr_recipes.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.data.datamodule import DataModule
from asr_recipes.decoding import make_search
from asr_recipes.decoding.latency import LatencySummary, emission_delays, forced_alignment, stream_utterance
from asr_recipes.decoding.runner import scoring_unit, to_units
from asr_recipes.decoding.settings import resolve
from asr_recipes.decoding.streaming import StreamingRecognizer
from asr_recipes.training.distributed import resolve_device

log = logging.getLogger(__name__)
HEADER = ("| model | chunk (ms) | method | WER % | compute per chunk, mean / max (ms) | RTF | "
          "emission delay, mean / p90 (ms) | timed words |\n|---|---:|---|---:|---:|---:|---:|---:|")


@hydra.main(config_path=CONFIG_PATH, config_name="streaming_report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not cfg.checkpoint or not cfg.reference:
        raise SystemExit("streaming_report: usage: python -m asr_recipes.bin.streaming_report CKPT "
                         "reference=OFFLINE_CKPT experiment=<recipe> [parts=[...]] [chunk_sizes=[4,8,16]]")
    device = resolve_device(cfg.device)
    try:
        ckpt, ref_ckpt = load_checkpoint(Path(cfg.checkpoint)), load_checkpoint(Path(cfg.reference))
        model, tokenizer = model_from_checkpoint(ckpt, device)
        reference, ref_tokenizer = model_from_checkpoint(ref_ckpt, device)
    except CheckpointError as e:
        raise SystemExit(f"streaming_report: {e}")
    if ref_tokenizer.to_dict() != tokenizer.to_dict():
        raise SystemExit("streaming_report: the reference model uses another tokenizer; align with an offline model "
                         "trained on the same tokens")
    searches = {}
    for size in cfg.chunk_sizes:
        try:
            settings = resolve(ckpt, beam=cfg.beam, chunk_size=int(size), left_context=cfg.left_context,
                               streaming=True, encoder=model.encoder)
        except ValueError as e:
            raise SystemExit(f"streaming_report: {e}") from None
        for method in cfg.methods:
            search = make_search(model, settings.options(method))
            searches[int(size), method] = StreamingRecognizer(model, search, settings.chunk.chunk_size,
                                                              settings.chunk.left_context, device)
    left = next(iter(searches.values())).left_context
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg["test_parts"] = list(cfg.parts) if cfg.parts else list(data_cfg.get("test_parts") or [])
    unit = scoring_unit(tokenizer)
    name = cfg.name or f"{Path(cfg.checkpoint).parent.name}/{Path(cfg.checkpoint).name}"
    lines = [f"### streaming report: {name}", "",
             f"- {datetime.now():%Y-%m-%d %H:%M}, {device}, torch threads {torch.get_num_threads()}; left context "
             f"{left} frames ({40 * left} ms); reference alignment: {cfg.reference}", ""]
    for part, loader in DataModule(data_cfg, tokenizer, model.encoder.output_lengths).test_dataloaders().items():
        summaries = {key: LatencySummary() for key in searches}
        done = 0
        for batch in loader:
            for feats, T, text in zip(batch["features"], batch["feature_lens"].tolist(), batch["texts"]):
                if cfg.max_utterances is not None and done >= cfg.max_utterances:
                    break
                done += 1
                feats = feats[:T]
                ref_tokens = tokenizer.encode([text])[0]
                ref_frames = forced_alignment(reference, feats, ref_tokens)
                ref_units = to_units(text, unit)
                for key, recognizer in searches.items():
                    run = stream_utterance(recognizer, feats)
                    hyp_units = to_units(tokenizer.decode([run.result.tokens])[0], unit)
                    errors = kaldialign.edit_distance(ref_units, hyp_units)["total"]
                    delays = emission_delays(tokenizer, ref_tokens, ref_frames, run.result, recognizer, T,
                                             reference.encoder.lookahead_frames)
                    summaries[key].add(run, errors, len(ref_units), T * FRAME_SHIFT, delays)
        lines += [f"{part}: {done} utterances", "", HEADER]
        for (size, method), summary in summaries.items():
            r = summary.row()
            lines.append(f"| {name} | {40 * size} | {method} | {r['wer']:.2f} | {r['chunk_ms_mean']:.1f} / "
                         f"{r['chunk_ms_max']:.1f} | {r['rtf']:.3f} | {r['delay_ms_mean']:.0f} / {r['delay_ms_p90']:.0f} | "
                         f"{r['timed_words']} / {r['ref_words']} |")
        lines.append("")
    text = "\n".join(lines)
    if cfg.out:
        write_atomic(Path(cfg.out), text)
    print(text, flush=True)


if __name__ == "__main__":
    sys.argv = positional_checkpoint(sys.argv)
    main()

"""Decoding speed at fixed batch sizes: ``python -m asr_recipes.bin.bench_decode checkpoint=C cuts=M
batch_sizes=[1,32] methods=[greedy_search,modified_beam_search]`` (see conf/bench_decode.yaml).

Prints one markdown row per (batch size, method): RTF, utterances/s, error rate.
"""

import json
import logging
from pathlib import Path

import hydra
from lhotse import CutSet
from omegaconf import DictConfig

from asr_recipes.atomic_files import write_atomic
from asr_recipes.bin import CONFIG_PATH
from asr_recipes.checkpoint import choose_checkpoint, model_from_checkpoint
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.decoding.runner import machine_info
from asr_recipes.tools.bench.decode import decode_speed, speed_table
from asr_recipes.training.distributed import resolve_device

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="bench_decode", version_base="1.3")
def main(cfg: DictConfig) -> None:
    device = resolve_device(cfg.device)
    if not Path(cfg.cuts).is_file():
        raise SystemExit(f"error: cut manifest {cfg.cuts} not found (the fbank stage writes <dir>/<corpus>_cuts_<part>"
                         ".jsonl.gz)")
    choice = choose_checkpoint(Path(cfg.checkpoint).parent, checkpoint=cfg.checkpoint)
    model, tokenizer = model_from_checkpoint(choice.checkpoint, device)
    choice.checkpoint = None  # the weights are in the model now
    cuts = CutSet.from_file(cfg.cuts)
    if cfg.max_utterances is not None:
        cuts = cuts.subset(first=cfg.max_utterances)
    searches = {m: make_search(model, DecodingOptions(method=m, beam=cfg.beam, max_sym_per_frame=cfg.max_sym_per_frame))
                for m in cfg.methods}
    rows = decode_speed(model, tokenizer, cuts, searches, list(cfg.batch_sizes), device, cfg.max_seconds,
                        cfg.warmup_batches, cfg.num_workers)
    machine = machine_info(device)
    print(f"decoding speed | {choice.source} | {machine['device_name']} ({machine['device']}) | torch {machine['torch']}")
    print("\n".join(speed_table(rows)), flush=True)
    if cfg.out_json:
        write_atomic(cfg.out_json, json.dumps({"machine": machine, "checkpoint": choice.source,
                                               "rows": [r.to_dict() for r in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    main()

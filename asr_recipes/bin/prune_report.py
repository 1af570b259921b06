"""Prune-range report: ``python -m asr_recipes.bin.prune_report CKPT experiment=<recipe>
[parts=[dev-clean]] [s_ranges=[2,3,4,5,8]] [max_batches=20] [out_dir=DIR]``.

For each s_range: the share of the full model's lattice occupation inside the band training
would use (from the simple loss, the checkpoint's loss settings), the pruned - full loss gap
per frame, and how many utterances' best path leaves the band (asr_recipes.diagnostics).
Writes <out_dir>/prune-report.md and a PNG of one utterance's lattice with its band, and
prints the table. The model comes from the checkpoint alone; the experiment gives the data.
CKPT may also be passed as checkpoint=PATH.
"""

import logging
import re
import sys
from datetime import datetime
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from asr_recipes.atomic_files import write_atomic
from asr_recipes.bin import CONFIG_PATH, positional_checkpoint
from asr_recipes.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from asr_recipes.data.datamodule import DataModule
from asr_recipes.diagnostics.prune_report import collect, markdown, training_lattice
from asr_recipes.models.build import count_parameters
from asr_recipes.training.distributed import resolve_device

log = logging.getLogger(__name__)


@hydra.main(config_path=CONFIG_PATH, config_name="prune_report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not cfg.checkpoint:
        raise SystemExit("prune_report: no checkpoint; usage: python -m asr_recipes.bin.prune_report CKPT "
                         "experiment=<recipe> [parts=[...]] [s_ranges=[2,3,4,5,8]]")
    device = resolve_device(cfg.device)
    path = Path(cfg.checkpoint)
    try:
        ckpt = load_checkpoint(path)
        model, tokenizer = model_from_checkpoint(ckpt, device)
    except CheckpointError as e:
        raise SystemExit(f"prune_report: {e}")
    overrides = {k: cfg[k] for k in ("prune_range", "lm_scale", "am_scale", "delay_penalty")}
    lattice, source = training_lattice(ckpt, overrides)
    progress = ckpt.get("progress", {})
    del ckpt

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    parts = list(cfg.parts) if cfg.parts else list(data_cfg.get("valid_parts") or [])
    if not parts:
        raise SystemExit("prune_report: no data parts; pass parts=[part,...]")
    data_cfg["test_parts"] = parts  # test loaders: every cut, fixed order, no augmentation
    loaders = DataModule(data_cfg, tokenizer, model.encoder.output_lengths).test_dataloaders()
    s_ranges = [int(s) for s in cfg.s_ranges]
    plot_s_range = int(cfg.plot_s_range) if cfg.plot_s_range is not None else lattice.prune_range
    sample = collect(model, loaders, s_ranges, lattice, int(cfg.max_batches), device, plot_s_range,
                     cfg.plot_cut_id, int(cfg.max_lattice_elements))

    out_dir = Path(cfg.out_dir) if cfg.out_dir else path.parent / f"prune-report-{path.stem}"
    hours = (progress.get("train_seconds") or 0) / 3600
    info = {
        "checkpoint": f"{path} ({count_parameters(model) / 1e6:.2f} M parameters, vocabulary {model.vocab_size}; "
                      f"epoch {progress.get('epoch')}, step {progress.get('step')}, {hours:.2f} h of training)",
        "band settings": f"prune_range {lattice.prune_range}, lm_scale {lattice.lm_scale}, am_scale "
                         f"{lattice.am_scale}, delay_penalty {lattice.delay_penalty} (from {source})",
        "run": f"{datetime.now():%Y-%m-%d %H:%M} on {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}",
    }
    text = f"### prune report: {path.name}\n\n" + markdown(sample, s_ranges, info)
    if cfg.plot and sample.lattice is not None:
        from asr_recipes.diagnostics.heatmap import plot_lattice

        name = re.sub(r"[^A-Za-z0-9._-]", "_", sample.lattice.cut_id)
        png = plot_lattice(sample.lattice, plot_s_range, out_dir / f"prune-band-{name}-s{plot_s_range}.png")
        text += f"\npicture: {png.name} (utterance {sample.lattice.cut_id}, s_range {plot_s_range})\n"
    write_atomic(out_dir / "prune-report.md", text)
    log.info("wrote %s", out_dir / "prune-report.md")
    print(text, end="")


if __name__ == "__main__":
    sys.argv = positional_checkpoint(sys.argv)
    main()

"""Deployment check: ``python -m asr_recipes.bin.deploy_check CKPT export_dir=DIR cuts=MANIFEST
[limit=N]`` prints the table of asr_recipes.export.deploy_check (PyTorch vs onnxruntime vs
sherpa-onnx, fp32 and int8: WER, identical transcripts, RTF, size); see conf/deploy_check.yaml.
"""

import datetime
import sys

import hydra
from omegaconf import DictConfig

from asr_recipes.bin import CONFIG_PATH, positional_checkpoint
from asr_recipes.checkpoint import CheckpointError, load_checkpoint
from asr_recipes.export.compat import ExportError
from asr_recipes.export.deploy_check import deploy_check, format_table


@hydra.main(config_path=CONFIG_PATH, config_name="deploy_check", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        ckpt = load_checkpoint(cfg.checkpoint)
        rows, info = deploy_check(ckpt, cfg.export_dir, cfg.cuts, source=str(cfg.checkpoint), limit=cfg.limit,
                                  unit=cfg.unit, beam=cfg.beam, num_threads=cfg.num_threads)
    except (CheckpointError, ExportError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"deploy_check: {e}") from None
    print(f"checkpoint {cfg.checkpoint} | export {cfg.export_dir} | cuts {cfg.cuts} | {info['utterances']} "
          f"utterances, {info['audio_seconds']} s | {'streaming ' + str(info['chunk']) if info['streaming'] else 'offline'}"
          f" | {info['threads']} thread(s), {info['cpu']} | {datetime.date.today()}")
    print(format_table(rows, cfg.unit))


if __name__ == "__main__":
    sys.argv = positional_checkpoint(sys.argv)
    main()

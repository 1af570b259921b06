"""What the training loop reports: log lines, TensorBoard scalars, a progress bar, counters.

Only the main rank writes anything; other ranks get a monitor that just counts.
"""

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


class TrainMonitor:
    def __init__(self, exp_dir: Path, is_main: bool, tensorboard: bool, progress_bar: bool,
                 device: Optional[torch.device] = None):
        """device: a CUDA device adds its peak allocated memory (since the last
        ``torch.cuda.reset_peak_memory_stats``) to each log line."""
        self.is_main = is_main
        self.cuda_device = device if device is not None and device.type == "cuda" else None
        self.writer = None
        if is_main and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(exp_dir) / "tensorboard"))
        self.use_bar = is_main and progress_bar
        self.bar: Optional[tqdm] = None
        self.counters: Counter = Counter()
        self._window = Counter()
        self._window_start = time.time()

    def start_epoch(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.use_bar:
            self.bar = tqdm(desc=f"epoch {epoch + 1}", unit="batch", dynamic_ncols=True, mininterval=2.0)

    def count(self, name: str, n: int) -> None:
        if n:
            self.counters[name] += n
            if self.is_main:
                log.warning("%s: +%d (total %d)", name, n, self.counters[name])

    def train_step(self, step: int, lr: float, grad_norm: float, loss_sum: float, parts: Dict[str, float],
                   frames: float, utts: int, log_every_n: int, audio_seconds: float = 0.0) -> None:
        """One optimizer step: loss sums over ``frames`` encoder frames of ``utts`` utterances,
        ``audio_seconds`` of audio in the batch; every ``log_every_n`` steps a log line with the
        per-frame losses and the window's throughput."""
        w = self._window
        w["loss"] += loss_sum
        for k, v in parts.items():
            w[k] += v
        w["frames"] += frames
        w["utts"] += utts
        w["audio"] += audio_seconds
        w["steps"] += 1
        if self.bar is not None:
            self.bar.update(1)
        if step % log_every_n:
            return
        elapsed = max(time.time() - self._window_start, 1e-9)
        per_frame = {k: w[k] / max(w["frames"], 1.0) for k in ["loss", *parts]}
        utts_per_sec = w["utts"] / elapsed
        audio_per_sec = w["audio"] / elapsed
        peak_gib = (torch.cuda.max_memory_allocated(self.cuda_device) / 2**30 if self.cuda_device is not None
                    else None)
        if self.is_main:
            log.info("step %d: %s, lr %.2e, grad norm %.2f, %.1f utt/s, %.1f s of audio/s, %.1f ms/step%s", step,
                     ", ".join(f"{k} {v:.4f}" for k, v in per_frame.items()), lr, grad_norm, utts_per_sec,
                     audio_per_sec, 1e3 * elapsed / w["steps"],
                     "" if peak_gib is None else f", peak mem {peak_gib:.2f} GiB")
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{per_frame['loss']:.4f}", lr=f"{lr:.1e}")
            if self.writer is not None:
                for k, v in per_frame.items():
                    self.writer.add_scalar(f"train/{k}_per_frame", v, step)
                self.writer.add_scalar("train/lr", lr, step)
                self.writer.add_scalar("train/grad_norm", grad_norm, step)
                self.writer.add_scalar("train/utterances_per_second", utts_per_sec, step)
                self.writer.add_scalar("train/audio_seconds_per_second", audio_per_sec, step)
                if peak_gib is not None:
                    self.writer.add_scalar("train/peak_memory_gib", peak_gib, step)
                for k, v in self.counters.items():
                    self.writer.add_scalar(f"train/{k}", v, step)
        self._window = Counter()
        self._window_start = time.time()

    def valid(self, epoch: int, step: int, losses: Dict[str, float]) -> None:
        if not self.is_main:
            return
        log.info("epoch %d validation: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"valid/{k}_per_frame", v, step)
            self.writer.flush()

    def prune_coverage(self, step: int, prune_range: int, stats) -> None:
        """Logs a PruneStats (asr_recipes.diagnostics.prune_coverage) of the validation batches."""
        if not self.is_main:
            return
        log.info("prune_range %d on %d validation utterances: coverage %.4f%% of the full lattice's occupation, "
                 "pruned - full loss %.2e per frame, best path outside the band in %d", prune_range,
                 stats.utterances, 100 * stats.coverage, stats.gap_per_frame, stats.escapes)
        if self.writer is not None:
            self.writer.add_scalar("valid/prune_coverage", stats.coverage, step)
            self.writer.add_scalar("valid/prune_gap_per_frame", stats.gap_per_frame, step)
            self.writer.add_scalar("valid/prune_best_path_escapes", stats.escapes / stats.utterances, step)
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def setup_logging(exp_dir: Path, is_main: bool, name: str = "train") -> None:
    """INFO to stdout and to <exp_dir>/log/<name>.log on the main rank; warnings only elsewhere."""
    handlers = [logging.StreamHandler()]
    if is_main:
        log_dir = Path(exp_dir) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_dir / f"{name}.log"))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s", handlers=handlers, force=True)

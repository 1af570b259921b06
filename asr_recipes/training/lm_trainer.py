"""Training loop of a token LSTM language model (asr_recipes.lm.model), one process.

    trainer = LmTrainer(cfg, model, tokenizer, train_corpus, dev_corpus, device, record)
    trainer.fit()

Batches hold sentences of similar length (sorted by length, ties and batch order shuffled
per epoch) up to ``max_tokens`` predictions, N * (U_max + 1). Per step: summed negative
log-likelihood / predictions -> backward -> gradient clipping -> Adam (icefall's RNN-LM
recipe: Adam, lr 1e-3, weight decay 1e-6, clip 5). The dev perplexity (predictions = tokens +
one end of sentence per sentence) is logged every ``valid_every_n`` steps and at each epoch
end, where ``epoch-<N>.pt`` (asr_recipes.checkpoint.lm) is written atomically; the newest
``keep_last_k`` are kept. A run stopped by ``max_steps`` inside an epoch writes
``checkpoint-<step>.pt`` instead (an epoch-N.pt always holds N whole epochs). latest.txt names
the newest file; starting again with the same lm_dir continues from it: the epoch's batches are
drawn again from the same seed and the ones already trained are skipped, so a run stopped and
continued trains on exactly the batches of a run that never stopped.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from asr_recipes.checkpoint.lm import (
    latest_lm_checkpoint, lm_epoch_checkpoints, lm_step_checkpoints, load_lm_checkpoint, save_lm_checkpoint,
)
from asr_recipes.lm.model import RnnLm
from asr_recipes.training.lm_text import TokenCorpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LmTrainConfig:
    lm_dir: str
    num_epochs: int = 10
    max_steps: Optional[int] = None  # stop after this many steps in total (checkpoint-<step>.pt inside an epoch)
    max_tokens: int = 20000  # predictions per batch, padding included
    lr: float = 1e-3
    weight_decay: float = 1e-6
    grad_clip: float = 5.0
    log_every_n: int = 100
    valid_every_n: int = 0  # 0: dev perplexity at epoch ends only
    keep_last_k: int = 3
    seed: int = 42


def batch_indices(lengths: np.ndarray, max_tokens: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sentence indices grouped into batches of similar length whose padded size
    N * (U_max + 1) stays within max_tokens (a longer sentence gets a batch alone); in a
    random order."""
    order = np.lexsort((rng.random(len(lengths)), lengths))  # by length, ties shuffled
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * (lengths[order[end]] + 1) <= max_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    rng.shuffle(batches)
    return batches


def make_batch(corpus: TokenCorpus, indices: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (N, U_max) int64 padded with 0, lens (N,) int64)."""
    seqs = [corpus[i] for i in indices]
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    tokens = torch.zeros(len(seqs), int(lens.max()), dtype=torch.int64)
    for n, s in enumerate(seqs):
        tokens[n, :len(s)] = torch.from_numpy(s.astype(np.int64))
    return tokens.to(device), lens.to(device)


@torch.no_grad()
def perplexity(model: RnnLm, corpus: TokenCorpus, max_tokens: int = 20000,
               device: torch.device | str = "cpu") -> tuple[float, float, int]:
    """(perplexity, total nll in nats, predictions) of ``corpus``: exp(nll / predictions),
    predictions = tokens + one end of sentence per sentence."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for idx in batch_indices(corpus.lengths(), max_tokens, np.random.default_rng(0)):
        tokens, lens = make_batch(corpus, idx, torch.device(device))
        total += float(model.token_nll(tokens, lens).double().sum())
        count += int(lens.sum()) + len(idx)
    model.train(was_training)
    return (math.exp(total / count) if count else float("nan")), total, count


class LmTrainer:
    def __init__(self, cfg: LmTrainConfig, model: RnnLm, tokenizer, train: TokenCorpus, dev: TokenCorpus,
                 device: torch.device, record: Optional[dict[str, Any]] = None):
        """model: an RnnLm over ``tokenizer``'s vocabulary; train / dev: tokenized text;
        record: the resolved config, stored in checkpoints."""
        if len(train) == 0:
            raise ValueError("the LM training text is empty; give text sources (files or manifests)")
        self.cfg = cfg
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.train_corpus, self.dev_corpus = train, dev
        self.device = device
        self.record = record or {}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch, self.step, self.train_seconds = 0, 0, 0.0  # epoch: whole epochs trained
        self.skip_batches = 0  # batches of epoch + 1 trained before a restart
        self.lm_dir = Path(cfg.lm_dir)

    def _resume(self) -> None:
        path = latest_lm_checkpoint(self.lm_dir)
        if path is None:
            return
        ckpt = load_lm_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        progress = ckpt["progress"]
        self.epoch, self.step, self.train_seconds = progress["epoch"], progress["step"], progress["train_seconds"]
        self.skip_batches = progress.get("batches_in_epoch", 0)
        if ckpt.get("rng") is not None:
            torch.set_rng_state(ckpt["rng"])
        log.info("resuming after %s (epoch %d done, step %d)", path.name, self.epoch, self.step)

    def fit(self) -> Optional[float]:
        """Train to num_epochs (or max_steps); returns the last dev perplexity (None without dev text)."""
        self._resume()
        dev_ppl = None
        while self.epoch < self.cfg.num_epochs and not self._steps_done():
            dev_ppl = self._train_epoch(self.epoch + 1)
        return dev_ppl

    def _steps_done(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    def _dev_perplexity(self) -> Optional[float]:
        if len(self.dev_corpus) == 0:
            return None
        ppl, _, count = perplexity(self.model, self.dev_corpus, self.cfg.max_tokens, self.device)
        log.info("epoch %d step %d: dev perplexity %.3f (%d predictions)", self.epoch, self.step, ppl, count)
        return ppl

    def _train_epoch(self, epoch: int) -> Optional[float]:
        """Epoch ``epoch`` (1-based) from its batch ``skip_batches`` on; the dev perplexity at
        its end, or when max_steps stops it early."""
        rng = np.random.default_rng(self.cfg.seed + epoch)
        batches = batch_indices(self.train_corpus.lengths(), self.cfg.max_tokens, rng)
        done_before, self.skip_batches = self.skip_batches, 0
        self.model.train()
        started = time.perf_counter()
        window_nll, window_count = 0.0, 0
        trained = done_before
        for idx in batches[done_before:]:
            tokens, lens = make_batch(self.train_corpus, idx, self.device)
            nll = self.model.token_nll(tokens, lens).sum()
            count = int(lens.sum()) + len(idx)
            self.optimizer.zero_grad(set_to_none=True)
            (nll / count).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            trained += 1
            window_nll += float(nll.detach())
            window_count += count
            if self.step % self.cfg.log_every_n == 0:
                log.info("epoch %d step %d: train perplexity %.3f", epoch, self.step,
                         math.exp(window_nll / window_count))
                window_nll, window_count = 0.0, 0
            if self.cfg.valid_every_n and self.step % self.cfg.valid_every_n == 0:
                self._dev_perplexity()
            if self._steps_done():
                break
        self.train_seconds += time.perf_counter() - started
        if trained < len(batches):  # stopped by max_steps inside the epoch
            dev_ppl = self._dev_perplexity()
            self._save(self.lm_dir / f"checkpoint-{self.step}.pt", dev_ppl, batches_in_epoch=trained)
            return dev_ppl
        self.epoch = epoch
        dev_ppl = self._dev_perplexity()
        self._save(self.lm_dir / f"epoch-{self.epoch}.pt", dev_ppl)
        return dev_ppl

    def _save(self, path: Path, dev_ppl: Optional[float], batches_in_epoch: int = 0) -> None:
        """``path`` with the training state after ``self.epoch`` whole epochs and
        ``batches_in_epoch`` batches of the next; then the files it supersedes go."""
        save_lm_checkpoint(path, {
            "lm_config": self.model.config.to_dict(), "vocab_size": self.model.vocab_size,
            "tokenizer": self.tokenizer.to_dict(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": {"epoch": self.epoch, "step": self.step, "batches_in_epoch": batches_in_epoch,
                         "train_seconds": self.train_seconds},
            "rng": torch.get_rng_state(),
            "valid": None if dev_ppl is None else {"perplexity": dev_ppl},
            "train_config": {**self.record, "trainer": asdict(self.cfg)},
        }, update_latest=True)
        log.info("wrote %s", path)
        for old in lm_step_checkpoints(self.lm_dir):  # the newest state is in `path` now
            if old != path:
                old.unlink()
        epochs = lm_epoch_checkpoints(self.lm_dir)
        for old in epochs[:-self.cfg.keep_last_k] if self.cfg.keep_last_k > 0 else []:
            old.unlink()


def prepare_text(cfg: dict, tokenizer) -> tuple[TokenCorpus, TokenCorpus]:
    """(train, dev) corpora of a train_lm config (conf/train_lm.yaml): the dev sentences and
    those of ``exclude_manifests`` are removed from the training text, which is read from
    ``token_cache`` when it was tokenized before (asr_recipes.training.lm_text)."""
    from asr_recipes.data.tokenizer import read_manifest_texts
    from asr_recipes.training.lm_text import TextSources, normalized_set, tokenize_cached, tokenize_sources

    train_sources, dev_sources = TextSources.from_mapping(cfg["text"]), TextSources.from_mapping(cfg["dev"])
    if not train_sources:
        raise ValueError("no LM training text: set text.files or text.manifests")
    max_tokens = cfg.get("max_sentence_tokens")
    dev, dev_stats = tokenize_sources(dev_sources, tokenizer, max_tokens=None)
    exclude = normalized_set(dev_sources.sentences(), tokenizer) if dev_sources else set()
    for manifest in cfg.get("exclude_manifests") or ():
        exclude |= normalized_set(read_manifest_texts(manifest), tokenizer)
    train, stats = tokenize_cached(train_sources, tokenizer, exclude, max_tokens, cfg.get("token_cache"))
    log.info("LM training text: %s; %d tokens", stats.describe(), train.num_tokens)
    log.info("LM dev text: %d sentences, %d tokens", dev_stats.sentences, dev.num_tokens)
    return train, dev


def run(cfg: dict, device: torch.device) -> Optional[float]:
    """bin.train_lm: tokenizer, text, model, training; returns the last dev perplexity."""
    from asr_recipes.data.tokenizer import load_tokenizer
    from asr_recipes.lm.model import LmConfig, count_parameters

    tokenizer = load_tokenizer(cfg["tokenizer_dir"])
    train, dev = prepare_text(cfg, tokenizer)
    torch.manual_seed(cfg["trainer"].get("seed", 42))
    model = RnnLm(tokenizer.vocab_size, LmConfig.from_mapping(cfg["lm_model"]))
    log.info("RNN-LM: %s, V=%d, %.2fM parameters", model.config, model.vocab_size, count_parameters(model) / 1e6)
    trainer_cfg = LmTrainConfig(lm_dir=cfg["lm_dir"], **cfg["trainer"])
    return LmTrainer(trainer_cfg, model, tokenizer, train, dev, device, record=cfg).fit()

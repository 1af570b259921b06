"""Train / valid / test DataLoaders from cut manifests and a plain config dict.

``DataModule(config, tokenizer, output_lengths)`` with ``config`` as in ``conf/data/default.yaml``
(resolved to plain Python, e.g. ``OmegaConf.to_container(cfg.data, resolve=True)``)::

    dm = DataModule(cfg, tokenizer, model.encoder.output_lengths)
    for epoch in range(start_epoch, num_epochs):
        loader = dm.train_dataloader(epoch, rank, world_size, sampler_state)
        for step, batch in enumerate(loader):  # see AsrDataset for the batch dict
            ...
            state = DataModule.sampler_state(loader, batches_consumed)  # into the checkpoint

Cut manifests are read lazily; each manifest set is scanned once by the filters
(:mod:`asr_recipes.data.filters`, which count encoder frames with ``output_lengths``: the
model's ``encoder.output_lengths``, the x4 Conv2d front end's formula if not given), whose
counts are logged. Training batches come from
a rank-aware lhotse ``DynamicBucketingSampler`` (every rank draws the same batch
sequence and keeps every ``world_size``-th batch, so ranks see disjoint cuts), get
optional noise (MUSAN-layout noise cuts mixed with lhotse ``CutSet.mix``) and
``SpecAugment``, both seeded per batch from (seed, epoch, cut ids)
(:mod:`asr_recipes.data.augment`), so resuming mid-epoch reproduces the uninterrupted run
with or without worker processes; valid/test batches get neither. With ``mux.parts``, another
corpus's training cuts are mixed in at the ratio ``mux.weight`` (:mod:`asr_recipes.data.mux`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from lhotse import CutSet, load_manifest
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler, SpecAugment
from lhotse.dataset.dataloading import make_worker_init_fn
from torch.utils.data import DataLoader

from asr_recipes.constants import frames_after_subsampling
from asr_recipes.data.augment import NoiseMix
from asr_recipes.data.dataset import AsrDataset
from asr_recipes.data.filters import DropIds, FilterConfig, scan_cuts
from asr_recipes.data.manifests import manifest_path
from asr_recipes.data.mux import MuxConfig, mux_with
from asr_recipes.data.two_views import TwoViewSpecAugment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpecAugConfig:
    """lhotse ``SpecAugment`` settings (training batches only)."""

    enabled: bool = True
    time_warp_factor: int = 80
    num_feature_masks: int = 2
    features_mask_size: int = 27
    num_frame_masks: int = 10
    frames_mask_size: int = 100
    max_frames_mask_fraction: float = 0.15

    def __post_init__(self):
        # lhotse divides by num_frame_masks inside the loader's workers: say it here instead
        if self.num_frame_masks < 1 or self.num_feature_masks < 0:
            raise ValueError(f"data.specaug: num_frame_masks must be >= 1 and num_feature_masks >= 0, got "
                             f"{self.num_frame_masks} and {self.num_feature_masks} (lhotse's SpecAugment "
                             "cannot run without a frame mask); for (almost) no time masking use "
                             "num_frame_masks=1 frames_mask_size=1")


@dataclass(frozen=True)
class MusanConfig:
    """Noise mixing into training cuts; off while ``parts`` is empty."""

    #: MUSAN parts whose cuts (fbank stage, corpus=musan) are mixed in:
    #: ``<manifest_dir>/musan_cuts_<part>.jsonl.gz``.
    parts: tuple[str, ...] = ()
    #: Probability that a training cut gets noise.
    prob: float = 0.5
    #: SNR range (dB) sampled uniformly per mixed cut.
    snr: tuple[float, float] = (10.0, 20.0)


@dataclass(frozen=True)
class DataConfig:
    """Everything the data pipeline reads from ``conf/data/*.yaml``.

    Cut manifests are found by the fbank stage's naming scheme,
    ``<manifest_dir>/<corpus>_cuts_<part>.jsonl.gz``; test sets are named by their part.
    ``max_duration`` is the total seconds of audio per batch; utterance length bounds
    are under ``filters``.
    """

    manifest_dir: str
    corpus: str
    train_parts: tuple[str, ...]
    valid_parts: tuple[str, ...]
    test_parts: tuple[str, ...] = ()
    max_duration: float = 200.0
    num_buckets: int = 30
    num_workers: int = 2
    shuffle: bool = True
    drop_last: bool = True
    seed: int = 42
    filters: FilterConfig = field(default_factory=FilterConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    musan: MusanConfig = field(default_factory=MusanConfig)
    mux: MuxConfig = field(default_factory=MuxConfig)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "DataConfig":
        """Build from a plain mapping; unknown keys are an error naming the key."""
        cfg = dict(cfg)
        _check_keys("data", cfg, cls)
        nested = {"filters": FilterConfig, "specaug": SpecAugConfig, "musan": MusanConfig, "mux": MuxConfig}
        for key, sub_cls in nested.items():
            sub = dict(cfg.get(key) or {})
            _check_keys(f"data.{key}", sub, sub_cls)
            if key in ("musan", "mux"):
                sub["parts"] = _as_tuple(sub.get("parts"))
            if key == "musan" and "snr" in sub:
                sub["snr"] = tuple(float(x) for x in sub["snr"])
            cfg[key] = sub_cls(**sub)
        for key in ("train_parts", "valid_parts", "test_parts"):
            if key in cfg:
                cfg[key] = _as_tuple(cfg[key])
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in cfg and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"Missing key(s) {missing} in data config.")
        return cls(**cfg)


def _as_tuple(value) -> tuple[str, ...]:
    """null -> (), "a" -> ("a",), [a, b] -> (a, b)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _check_keys(where: str, cfg: Mapping, cls) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in {where} config; known keys: {sorted(known)}.")


class DataModule:
    """Builds the DataLoaders of one recipe. See the module docstring for usage."""

    def __init__(self, config: DataConfig | Mapping[str, Any], tokenizer,
                 output_lengths: Callable[[int], int] = frames_after_subsampling):
        self.config = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
        self.tokenizer = tokenizer
        self.output_lengths = output_lengths
        self._dropped: dict[tuple[str, ...], frozenset[str]] = {}
        self._kept_seconds: dict[tuple[str, ...], float] = {}
        self._noise: CutSet | None = None  # MUSAN cuts, see _noise_cuts()
        mux = self.config.mux
        if mux.parts:
            log.info("data.mux: about %.0f%% of the training cuts from %s %s", 100 * mux.weight,
                     mux.corpus or self.config.corpus, list(mux.parts))

    # ----------------------------------------------------------------- cuts
    def _path(self, corpus: str, part: str, manifest_dir: str | None = None) -> Path:
        manifest_dir = manifest_dir or self.config.manifest_dir
        path = manifest_path(manifest_dir, corpus, "cuts", part)
        if not path.is_file():
            raise FileNotFoundError(
                f"Cut manifest {path} not found: run the fbank stage (python -m asr_recipes.bin.fbank "
                f"corpus={corpus} parts=[{part}] out_dir={manifest_dir}) or fix "
                f"data.manifest_dir / data.corpus / the parts (data.mux.* for mixed-in parts)."
            )
        return path

    def _cuts(self, name: str, parts: tuple[str, ...], mode: str, manifest_dir: str | None = None,
              corpus: str | None = None) -> tuple[CutSet, float]:
        """Lazily read and concatenate the cuts of ``parts`` (of data.corpus in data.manifest_dir
        unless given), minus those the filters drop.

        Returns the cuts and their total duration in seconds after filtering."""
        if not parts:
            raise ValueError(f"No parts configured for {name} (data.{name}_parts).")
        paths = [self._path(corpus or self.config.corpus, p, manifest_dir) for p in parts]
        cuts = CutSet.from_jsonl_lazy(paths[0])
        for p in paths[1:]:
            cuts = cuts + CutSet.from_jsonl_lazy(p)
        key = (mode, *map(str, paths))
        if key not in self._dropped:
            report = scan_cuts(cuts, self.tokenizer, self.config.filters, name, mode, self.output_lengths)
            self._dropped[key] = frozenset(report.dropped_ids)
            self._kept_seconds[key] = report.kept_duration
            if report.kept == 0:
                raise ValueError(
                    f"No {name} cuts left after filtering {', '.join(map(str, paths))}: check the "
                    "filters (data.filters) and the transcripts; the log above says why cuts were dropped."
                )
        return cuts.filter(DropIds(self._dropped[key])), self._kept_seconds[key]

    # ----------------------------------------------------------- samplers
    def _sampler(self, cuts_and_seconds: tuple[CutSet, float], train: bool, rank: int, world_size: int):
        cfg = self.config
        cuts, seconds = cuts_and_seconds
        # Every bucket should fill at least two batches, or drop_last discards small sets
        # entirely (one bucket per cut drops every batch of a 20-cut corpus).
        num_buckets = min(cfg.num_buckets, int(seconds / cfg.max_duration / 2))
        common = dict(
            max_duration=cfg.max_duration,
            shuffle=cfg.shuffle if train else False,
            drop_last=cfg.drop_last if train else False,
            world_size=world_size,
            rank=rank,
            seed=cfg.seed,
        )
        if num_buckets < 2:  # too little data to bucket (lhotse needs >= 2 buckets)
            return DynamicCutSampler(cuts, **common)
        return DynamicBucketingSampler(cuts, num_buckets=num_buckets, **common)

    def _loader(self, dataset: AsrDataset, sampler, rank: int, world_size: int, seed: int) -> DataLoader:
        workers = self.config.num_workers
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,  # the sampler yields whole batches (CutSets)
            num_workers=workers,
            persistent_workers=False,
            # Distinct process seeds per worker and rank (lhotse's helper); the augmentation
            # itself is seeded per batch (AsrDataset's seed).
            worker_init_fn=(
                make_worker_init_fn(rank=rank, world_size=world_size, seed=seed) if workers else None
            ),
        )

    # ------------------------------------------------------------- public
    def train_dataloader(
        self, epoch: int, rank: int = 0, world_size: int = 1, sampler_state: Mapping | None = None,
        time_mask_ratio: float | None = None,
    ) -> DataLoader:
        """Training batches of ``epoch`` for ``rank`` of ``world_size`` (shuffled per epoch).

        ``sampler_state`` (from :meth:`sampler_state`, saved mid-``epoch``) makes the
        loader resume with the batch after the last one consumed. ``time_mask_ratio``
        (CR-CTC; the training objective asks for it): two SpecAugment views per batch
        (:class:`~asr_recipes.data.two_views.TwoViewSpecAugment` with data.specaug's
        settings, time masking that many times stronger) instead of one.
        """
        cfg = self.config
        sampler = self._sampler(self._train_cuts(epoch), True, rank, world_size)
        sampler.set_epoch(epoch)
        if sampler_state is not None:
            if sampler_state.get("epoch") != epoch:
                raise ValueError(
                    f"sampler_state was saved in epoch {sampler_state.get('epoch')}, "
                    f"cannot resume epoch {epoch} with it."
                )
            # lhotse consumes the dict it loads; keep the caller's checkpoint intact.
            sampler.load_state_dict(copy.deepcopy(dict(sampler_state)))
        cut_transforms = []
        if cfg.musan.parts:
            # Same duration and id as the clean cut: feature_lens, filters and ids stay valid.
            cut_transforms.append(NoiseMix(self._noise_cuts(), snr=cfg.musan.snr, prob=cfg.musan.prob))
        input_transforms, two_views = [], None
        params = dataclasses.asdict(cfg.specaug)
        del params["enabled"]
        if time_mask_ratio is not None:
            if not cfg.specaug.enabled:
                raise ValueError("CR-CTC (loss.cr_scale > 0) compares two SpecAugment views of each batch: enable "
                                 "data.specaug (data.specaug.enabled=true) or set loss.cr_scale=0")
            two_views = TwoViewSpecAugment(**params, time_mask_ratio=time_mask_ratio)
        elif cfg.specaug.enabled:
            input_transforms.append(SpecAugment(**params))
        dataset = AsrDataset(self.tokenizer, cut_transforms, input_transforms, seed=(cfg.seed, epoch),
                             two_views=two_views)
        return self._loader(dataset, sampler, rank, world_size, seed=cfg.seed + epoch)

    def _noise_cuts(self) -> CutSet:
        """The MUSAN cuts of every configured part, loaded once (not again every epoch)."""
        if self._noise is None:
            self._noise = CutSet.from_cuts(
                c for p in self.config.musan.parts for c in load_manifest(self._path("musan", p))
            )
        return self._noise

    def _mux_cuts(self) -> CutSet:
        mux = self.config.mux
        return self._cuts("mux", mux.parts, "train", mux.manifest_dir, mux.corpus)[0]

    def _train_cuts(self, epoch: int) -> tuple[CutSet, float]:
        """The training cuts of ``epoch`` and their seconds (data.mux: the other corpus mixed in)."""
        cfg = self.config
        cuts, seconds = self._cuts("train", cfg.train_parts, "train")
        if not cfg.mux.parts:
            return cuts, seconds
        return mux_with(cuts, self._mux_cuts(), cfg.mux.weight, cfg.seed + epoch), seconds / (1.0 - cfg.mux.weight)

    def train_cuts(self) -> CutSet:
        """The (lazy) training cuts after filtering, without augmentation or sampling (with
        data.mux, the mixed-in parts' cuts follow, each once)."""
        cuts = self._cuts("train", self.config.train_parts, "train")[0]
        return cuts + self._mux_cuts() if self.config.mux.parts else cuts

    def valid_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Validation batches, no augmentation, fixed order; every rank gets all unless
        ``world_size`` > 1 is given (then disjoint shares, to be all-reduced)."""
        cuts = self._cuts("valid", self.config.valid_parts, "valid")
        sampler = self._sampler(cuts, False, rank, world_size)
        return self._loader(AsrDataset(self.tokenizer), sampler, rank, world_size, seed=self.config.seed)

    def test_dataloaders(self) -> dict[str, DataLoader]:
        """``{test part: loader}`` over all cuts of each test part, no augmentation."""
        return {
            part: self._loader(
                AsrDataset(self.tokenizer),
                self._sampler(self._cuts(part, (part,), "test"), False, rank=0, world_size=1),
                rank=0, world_size=1, seed=self.config.seed,
            )
            for part in self.config.test_parts
        }

    @staticmethod
    def sampler_state(loader: DataLoader, batches_consumed: int) -> dict:
        """State that resumes ``loader``'s epoch right after ``batches_consumed`` batches.

        ``batches_consumed`` counts the batches of the current epoch the training loop
        took from the loader, including those before a previous resume. Worker
        prefetching makes the sampler itself run ahead of the loop, so its own
        ``state_dict()`` would skip batches; this corrects its batch count.
        """
        state = loader.sampler.state_dict()
        try:
            stats = state["diagnostics"]["stats_per_epoch"][state["epoch"]]
            stats["kept_batches"], stats["discarded_batches"] = batches_consumed, 0
        except KeyError as e:  # lhotse changed its state layout
            raise RuntimeError(
                f"Unexpected lhotse sampler state layout (missing {e}); update sampler_state()."
            ) from e
        return state

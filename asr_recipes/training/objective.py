"""The training objective as a module, so DistributedDataParallel can wrap one forward().

``TransducerObjective(model, cfg)`` returns per-utterance losses for the configured loss type:

* ``pruned``: simple (smoothed) + pruned RNN-T losses, weighted by the warm-up schedule
  (:class:`~asr_recipes.training.schedules.LossScales`);
* ``full``:   the full joiner with torchaudio's rnnt_loss (for side-by-side comparisons).

With ``ctc_scale`` > 0 (pruned only; the model needs a CTC head, model.ctc_head=true) the
auxiliary CTC loss of the head is added: total = transducer + ctc_scale * ctc. With
``cr_scale`` > 0 as well, consistency-regularised CTC (CR-CTC, icefall's ``--use-cr-ctc``):
each training batch comes with a second SpecAugment view (asr_recipes.data.two_views, time
masking ``time_mask_ratio`` times stronger), both views go through the encoder as one
batch of 2N, every loss is the mean of its two views' values, and the consistency term
(asr_recipes.models.ctc.consistency_loss) is added with cr_scale ramped up linearly over
warm_step steps:

    total = mean_views(transducer + ctc_scale * ctc) + min(step / warm_step, 1) * cr_scale * cr

which is icefall's sum over the doubled batch with every term halved. icefall's large
transducer + CR-CTC run uses ctc_scale 0.1, cr_scale 0.02, time_mask_ratio 2.5.
Validation (eval mode) sees one unaugmented view, so it reports no "cr" part.

Streaming (causal) models train with dynamic chunks (WeNet's U2, icefall's
``--dynamic-chunk-training``): each training batch draws an attention chunk size
(:class:`ChunkTrainingConfig`), so one model decodes with any chunk size; validation uses
full context. Offline models never draw, so their training is unchanged.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from asr_recipes.models.ctc import consistency_loss, ctc_loss
from asr_recipes.models.lattice import LatticeConfig
from asr_recipes.training.onset import symbol_start_frames
from asr_recipes.training.schedules import LossScales


@dataclass(frozen=True)
class LossConfig:
    """conf/loss/*.yaml: the loss type and its warm-up weighting, and flat the lattice's keys
    (prune_range, lm_scale, am_scale, delay_penalty, rnnt_type), of which ``lattice`` is
    the models' typed view."""

    type: str = "pruned"  # pruned | full
    prune_range: int = 5
    lm_scale: float = 0.25
    am_scale: float = 0.0
    simple_loss_scale: float = 0.5
    warm_step: int = 2000
    delay_penalty: float = 0.0
    rnnt_type: str = "regular"  # pruned only: regular | modified (<= 1 symbol per frame) | constrained
    ctc_scale: float = 0.0  # auxiliary CTC loss of the model's CTC head (0: off)
    cr_scale: float = 0.0  # CR-CTC consistency loss between two SpecAugment views (0: one view)
    time_mask_ratio: float = 2.5  # with cr_scale > 0: time masking of the two views vs data.specaug's

    def __post_init__(self):
        if self.type not in ("pruned", "full"):
            raise ValueError(f"loss.type must be 'pruned' or 'full', got {self.type!r}")
        _ = self.lattice  # building it validates the lattice keys
        if self.ctc_scale < 0 or self.cr_scale < 0 or self.time_mask_ratio <= 0:
            raise ValueError(f"need loss.ctc_scale >= 0, loss.cr_scale >= 0 and loss.time_mask_ratio > 0, got "
                             f"{self.ctc_scale}, {self.cr_scale}, {self.time_mask_ratio}")
        if self.cr_scale > 0 and self.ctc_scale == 0:
            raise ValueError("loss.cr_scale > 0 regularises the CTC head, which needs loss.ctc_scale > 0 too "
                             "(icefall's transducer + CR-CTC: ctc_scale 0.1, cr_scale 0.02)")
        if self.ctc_scale > 0 and self.type != "pruned":
            raise ValueError("loss.ctc_scale / loss.cr_scale need loss.type=pruned")

    @property
    def lattice(self) -> LatticeConfig:
        return LatticeConfig(self.prune_range, self.lm_scale, self.am_scale, self.delay_penalty, self.rnnt_type)

    @property
    def scales(self) -> LossScales:
        return LossScales(self.simple_loss_scale, self.warm_step)

    @property
    def two_views(self) -> bool:
        """Whether training batches need a second SpecAugment view (CR-CTC)."""
        return self.cr_scale > 0

    def cr_scale_at(self, step: int) -> float:
        """cr_scale ramped up linearly from 0 over the first warm_step steps (as icefall)."""
        return self.cr_scale * min(step / self.warm_step, 1.0) if self.warm_step > 0 else self.cr_scale


@dataclass(frozen=True)
class ChunkTrainingConfig:
    """Attention chunks drawn per training batch for causal (streaming) models.

    With probability ``full_context_prob`` a batch trains with full context; otherwise
    with a chunk size drawn uniformly from 1 .. ``max_chunk`` encoder frames (40 ms each)
    and ``num_left_chunks`` chunks of left context (-1: all). An encoder that takes only
    multiples of m frames as chunks (Encoder.chunk_multiple: the Zipformer's 4) gets a size
    drawn uniformly from the multiples of m up to ``max_chunk``.

    Or icefall's draw (its --chunk-size / --left-context-frames, here in 40 ms encoder frames),
    when ``chunk_sizes`` is set: a chunk size drawn from that list (-1: full context), then a
    left context drawn from ``left_contexts`` (-1: all) and rounded down to whole chunks, at
    least one; full_context_prob, max_chunk and num_left_chunks are then not used.

    ``speech_onset_rise`` (nats; None: off): every training batch, whatever its chunk, makes
    the frames before each utterance's speech onset blank-only (asr_recipes.training.onset),
    so that the model cannot learn to emit the first words before it has heard them.
    """

    full_context_prob: float = 0.25
    max_chunk: int = 16
    num_left_chunks: int = -1
    chunk_sizes: Optional[Tuple[int, ...]] = None  # e.g. (8, 16, 32, -1): icefall's Zipformer recipes
    left_contexts: Optional[Tuple[int, ...]] = None  # e.g. (32, 64, 128, -1); None: (-1,) = all
    speech_onset_rise: Optional[float] = None  # e.g. 1.0: blank-only frames before the speech onset

    def __post_init__(self):
        if not 0.0 <= self.full_context_prob <= 1.0:
            raise ValueError(f"chunk_training.full_context_prob must be in [0, 1], got {self.full_context_prob}")
        if self.max_chunk < 1:
            raise ValueError(f"chunk_training.max_chunk must be >= 1 encoder frames, got {self.max_chunk}")
        for name in ("chunk_sizes", "left_contexts"):  # plain lists from the config -> tuples
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.chunk_sizes is not None and (not self.chunk_sizes or any(c == 0 or c < -1 for c in self.chunk_sizes)):
            raise ValueError(f"chunk_training.chunk_sizes needs chunk sizes >= 1 encoder frames or -1 (full "
                             f"context), got {list(self.chunk_sizes)}")
        if self.left_contexts is not None and (not self.left_contexts or min(self.left_contexts) < -1):
            raise ValueError(f"chunk_training.left_contexts needs left contexts >= 0 encoder frames or -1 (all), "
                             f"got {list(self.left_contexts)}")
        if self.speech_onset_rise is not None and not self.speech_onset_rise > 0:
            raise ValueError(f"chunk_training.speech_onset_rise must be > 0 nats of log-mel energy (or null: off), "
                             f"got {self.speech_onset_rise}")

    def check_encoder(self, encoder) -> None:
        """ValueError unless every chunk size the draw can give suits ``encoder`` (a causal
        Encoder: Encoder.check_chunk_size and chunk_multiple)."""
        if self.chunk_sizes is None:
            if self.max_chunk < encoder.chunk_multiple:
                raise ValueError(f"trainer.chunk_training.max_chunk={self.max_chunk} is below the smallest chunk "
                                 f"this encoder takes ({encoder.chunk_multiple} encoder frames)")
            return
        for chunk in self.chunk_sizes:
            if chunk > 0:
                try:
                    encoder.check_chunk_size(chunk)
                except ValueError as e:
                    raise ValueError(f"trainer.chunk_training.chunk_sizes {list(self.chunk_sizes)}: {e}") from None

    def draw(self, generator: torch.Generator | None = None, multiple: int = 1) -> tuple[int, int]:
        """(chunk_size, left_context) in encoder frames for one batch; (0, -1) = full context.
        Chunk sizes are multiples of ``multiple`` (the encoder's chunk_multiple).
        Draws from torch's RNG, which checkpoints save, so a resumed run draws the same."""
        if self.chunk_sizes is not None:
            return self._draw_from_lists(generator)
        if float(torch.rand((), generator=generator)) < self.full_context_prob:
            return 0, -1
        chunk = multiple * int(torch.randint(1, self.max_chunk // multiple + 1, (), generator=generator))
        return chunk, -1 if self.num_left_chunks < 0 else chunk * self.num_left_chunks

    def _draw_from_lists(self, generator: torch.Generator | None) -> tuple[int, int]:
        chunk = self.chunk_sizes[int(torch.randint(len(self.chunk_sizes), (), generator=generator))]
        if chunk < 0:
            return 0, -1
        lefts = self.left_contexts or (-1,)
        left = lefts[int(torch.randint(len(lefts), (), generator=generator))]
        return chunk, -1 if left < 0 else max(left // chunk, 1) * chunk


class TransducerObjective(nn.Module):
    def __init__(self, model: nn.Module, cfg: LossConfig, chunks: ChunkTrainingConfig | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        # dynamic chunks only for streaming models (an offline encoder cannot mask chunks)
        self.chunks = chunks if getattr(model.encoder, "causal", False) else None
        if self.chunks is not None:
            self.chunks.check_encoder(model.encoder)
        has_head = getattr(model, "ctc_head", None) is not None
        if cfg.ctc_scale > 0 and not has_head:
            raise ValueError("loss.ctc_scale > 0 trains the model's CTC head, but the model has none: set "
                             "model.ctc_head=true")
        if self.chunks is not None and self.chunks.speech_onset_rise is not None and cfg.type != "pruned":
            raise ValueError("trainer.chunk_training.speech_onset_rise needs loss.type=pruned")
        if has_head and cfg.ctc_scale == 0:
            raise ValueError("the model has a CTC head (model.ctc_head=true) that loss.ctc_scale=0 would leave "
                             "untrained: set loss.ctc_scale > 0 (e.g. 0.1) or model.ctc_head=false")

    def forward(self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor,
                step: int, second_view: Tensor | None = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-utterance weighted losses.

        Args: a batch as produced by the data pipeline (features (N, T, 80), feature_lens (N,),
          tokens (N, U_max) padded, token_lens (N,)), the training step (for the warm-up), and
          with CR-CTC the batch's "second_view" (N, T, 80) (None while training with CR-CTC,
          e.g. the OOM pre-scan's batches: the features twice, at the same memory cost).
        Returns: total (N,) nats per utterance (may hold inf/nan for bad utterances: the caller
          drops them), and the unweighted parts {"simple": (N,), "pruned": (N,)} or {"full": (N,)},
          plus "ctc" (N,) with ctc_scale > 0 and "cr" (N,) when training with cr_scale > 0
          (with two views each part is the mean over the views).
        """
        chunk_size, left_context = (self.chunks.draw(multiple=self.model.encoder.chunk_multiple)
                                    if self.chunks is not None and self.training else (0, -1))
        if self.cfg.type == "full":
            full = self.model.full_loss(features, feature_lens, tokens, token_lens, reduction="none",
                                        chunk_size=chunk_size, left_context=left_context)
            return full, {"full": full}
        N = features.size(0)
        views = 2 if self.cfg.two_views and self.training else 1
        if views == 2:  # both views as one batch of 2N: [view 1; view 2]
            features = torch.cat([features, features if second_view is None else second_view])  # (2N, T, F)
            feature_lens, tokens, token_lens = feature_lens.repeat(2), tokens.repeat(2, 1), token_lens.repeat(2)
        symbol_start = None  # streaming: blank-only frames before the speech onset
        if self.chunks is not None and self.training and self.chunks.speech_onset_rise is not None:
            symbol_start = symbol_start_frames(self.model.encoder, features, feature_lens,
                                               self.chunks.speech_onset_rise)  # (views * N,)
        encoder_out, encoder_lens = self.model.encode(features, feature_lens, chunk_size, left_context)
        simple, pruned = self.model.losses(encoder_out, encoder_lens, tokens, token_lens, self.cfg.lattice,
                                           reduction="none", symbol_start=symbol_start)  # (views * N,) each
        simple_scale, pruned_scale = self.cfg.scales.at(step)
        total = simple_scale * simple + pruned_scale * pruned
        parts = {"simple": simple, "pruned": pruned}
        if self.cfg.ctc_scale > 0:
            log_probs = self.model.ctc_log_probs(encoder_out)  # (views * N, T', V)
            parts["ctc"] = ctc_loss(log_probs, encoder_lens, tokens, token_lens, blank=self.model.blank_id,
                                    reduction="none")
            total = total + self.cfg.ctc_scale * parts["ctc"]
        if views == 2:
            total, parts = _mean_of_views(total), {k: _mean_of_views(v) for k, v in parts.items()}
            parts["cr"] = consistency_loss(log_probs[:N], log_probs[N:], encoder_lens[:N], reduction="none")
            total = total + self.cfg.cr_scale_at(step) * parts["cr"]
        return total, parts


def _mean_of_views(values: Tensor) -> Tensor:
    """(2N,) values of [view 1; view 2] -> (N,) per-utterance means."""
    return values.view(2, -1).mean(dim=0)


def finite_mask(total: Tensor) -> Tensor:
    """Utterances whose loss can be trained on (finite); the others are dropped and counted."""
    return torch.isfinite(total.detach())


def masked_sum(values: Tensor, keep: Tensor) -> Tensor:
    """Sum of values (N,) over the kept utterances; dropped ones add an exact 0
    (where(), not multiplication: nan * 0 = nan)."""
    return torch.where(keep, values, torch.zeros_like(values)).sum()

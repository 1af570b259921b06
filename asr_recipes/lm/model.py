"""A token-level LSTM language model over a recipe's tokenizer (icefall's RNN-LM design).

Token ids are the transducer's (asr_recipes.data.tokenizer): 0 ``<blk>``, 1 ``<unk>``, real
tokens from 2. The blank never occurs in text, so the LM uses id 0 as both its
start-of-sentence input and its end-of-sentence target (``SOS_ID = EOS_ID = 0``): the
vocabulary, and hence the output layer and every exported graph, stays the transducer's V.
(icefall's BPE vocabularies have a ``<sos/eos>`` symbol at id 1 and use it the same way;
ours has ``<unk>`` there.)

A sentence y_1..y_U is scored as

    log P(y) = sum_{u=1..U} log p(y_u | sos, y_<u) + log p(eos | sos, y_1..y_U)

so ``sentence_log_prob`` (and the perplexity) counts U + 1 predictions per sentence, like
icefall's ``compute_perplexity``. Shapes: tokens (N, U) padded, lens (N,) tokens before
padding (no sos/eos); LSTM states (num_layers, N, hidden_dim) each, as torch.nn.LSTM.

Sizes: LibriSpeech's icefall RNN-LM is embedding 2048, hidden 2048, 3 layers, tied input
and output embeddings (conf/lm_model/librispeech.yaml); the mini recipe uses a small one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_recipes.constants import BLANK_ID

#: start-of-sentence input and end-of-sentence target: the blank, which text never contains
SOS_ID = EOS_ID = BLANK_ID

LstmState = tuple[Tensor, Tensor]  # (h, c), each (num_layers, N, hidden_dim)


@dataclass(frozen=True)
class LmConfig:
    """Architecture of an RnnLm (the keys of conf/lm_model/*.yaml); vocab_size comes from the
    tokenizer."""

    embedding_dim: int = 2048
    hidden_dim: int = 2048
    num_layers: int = 3
    tie_weights: bool = True
    dropout: float = 0.0  # between LSTM layers and before the output layer (training only)

    def __post_init__(self):
        for name in ("embedding_dim", "hidden_dim", "num_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"lm.{name} must be an integer >= 1, got {v!r}")
        if self.tie_weights and self.embedding_dim != self.hidden_dim:
            raise ValueError(f"lm.tie_weights needs embedding_dim == hidden_dim, got {self.embedding_dim} and "
                             f"{self.hidden_dim}; make them equal or set tie_weights=false")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lm.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "LmConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown lm config key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: (float(v) if k == "dropout" else v) for k, v in cfg.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RnnLm(nn.Module):
    """Embedding -> LSTM -> linear over the vocabulary (weights tied to the embedding)."""

    def __init__(self, vocab_size: int, config: LmConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.rnn = nn.LSTM(config.embedding_dim, config.hidden_dim, config.num_layers, batch_first=True,
                           dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden_dim, vocab_size)
        if config.tie_weights:
            self.output.weight = self.embedding.weight

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def hidden_dim(self) -> int:
        return self.config.hidden_dim

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> LstmState:
        """Zero (h, c), each (num_layers, batch_size, hidden_dim): before the sos input."""
        device = device if device is not None else self.embedding.weight.device
        shape = (self.num_layers, batch_size, self.hidden_dim)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def logits(self, x: Tensor, state: LstmState | None = None) -> tuple[Tensor, LstmState]:
        """x (N, L) input ids -> (logits (N, L, V) of the next token at each position, new state)."""
        emb = self.embedding(x)  # (N, L, E)
        out, state = self.rnn(emb, state)  # (N, L, H)
        return self.output(self.dropout(out)), state

    def step(self, tokens: Tensor, state: LstmState) -> tuple[Tensor, LstmState]:
        """One token per sentence: tokens (N,) and the states before them -> (log-probs (N, V)
        of the token after them, the states after them)."""
        logits, state = self.logits(tokens[:, None], state)  # (N, 1, V)
        return logits[:, 0].float().log_softmax(dim=-1), state

    def start(self, batch_size: int, device: torch.device | str | None = None) -> tuple[Tensor, LstmState]:
        """(log-probs (N, V) of the first token, state after sos) for N new sentences."""
        device = device if device is not None else self.embedding.weight.device
        sos = torch.full((batch_size,), SOS_ID, dtype=torch.int64, device=device)
        return self.step(sos, self.initial_state(batch_size, device))

    def token_nll(self, tokens: Tensor, lens: Tensor) -> Tensor:
        """Negative log-likelihood (nats) of every prediction: tokens (N, U) padded (any
        padding value), lens (N,) -> (N, U + 1), position u < lens[n] scoring tokens[n, u],
        position lens[n] scoring eos, later positions 0."""
        N, U = tokens.shape
        positions = torch.arange(U + 1, device=tokens.device)  # (U+1,)
        valid = positions[None, :] < lens[:, None]  # (N, U+1): real tokens
        targets = torch.cat([tokens, tokens.new_zeros(N, 1)], dim=1)  # (N, U+1)
        targets = torch.where(valid, targets, torch.full_like(targets, EOS_ID))
        x = torch.cat([torch.full((N, 1), SOS_ID, dtype=tokens.dtype, device=tokens.device), targets[:, :U]], 1)
        logits, _ = self.logits(x)  # (N, U+1, V)
        nll = F.cross_entropy(logits.float().reshape(-1, self.vocab_size), targets.reshape(-1), reduction="none")
        scored = positions[None, :] <= lens[:, None]  # (N, U+1): tokens and eos
        return nll.view(N, U + 1) * scored

    def sentence_log_prob(self, tokens: Tensor, lens: Tensor) -> Tensor:
        """log P(y) including eos (see the module docstring): (N, U), (N,) -> (N,) float32."""
        return -self.token_nll(tokens, lens).sum(dim=1)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (tied weights once)."""
    return sum(p.numel() for p in model.parameters())

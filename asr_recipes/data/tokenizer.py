"""Text <-> token ids for the transducer: SentencePiece (BPE / unigram) and characters.

Both tokenizers share one id convention, fixed here and relied on everywhere:

* id 0 is ``<blk>``, the transducer blank (``constants.BLANK_ID``); it is never produced
  by ``encode`` and doubles as the decoder's start-of-sequence context.
* id 1 is ``<unk>``: anything not in the vocabulary. SentencePiece maps a run of
  consecutive unknown characters to one ``<unk>``; the char tokenizer maps each one.
* ids 2 .. vocab_size-1 are real tokens.

Models imported from icefall keep icefall's layout (its BPE and char tables: ``<blk>`` 0,
``<sos/eos>`` 1, ``<unk>`` 2, real tokens from 3), so that their weights' rows mean the same
tokens: both tokenizers accept it (``unk_id`` is then 2; ``<sos/eos>`` is never produced by
``encode``). Code reads ``tokenizer.unk_id``, never the constant.

``decode`` drops ``<blk>`` and ``<unk>`` (an unknown token has no spelling to recover, and
rendering a placeholder would turn one error into several characters under CER).

Text normalisation is deliberately minimal: whitespace runs collapse to one space and
ends are stripped (char tokenizer without word boundaries: all whitespace removed). Case
and punctuation are the corpus preparation's job. For text whose symbols are all in the
vocabulary, ``decode(encode([t])) == [normalize(t)]``.

A tokenizer serialises to a plain dict (``to_dict``; JSON- and torch.save-safe, the
SentencePiece model embedded as base64) so a checkpoint alone rebuilds it, and to a
directory (``save`` / ``load_tokenizer``) holding ``tokenizer.json`` plus, for reading by
people and other tools, ``tokens.txt`` (``<token> <id>`` lines) and, for SentencePiece,
``sentencepiece.model``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

from asr_recipes.atomic_files import write_atomic
from asr_recipes.constants import BLANK_ID, UNK_ID

log = logging.getLogger(__name__)

BLANK = "<blk>"
UNK = "<unk>"
#: icefall's id 1 (its attention decoder's start/end symbol), before <unk> in icefall's tables
SOS_EOS = "<sos/eos>"
#: the symbols before the first real token: ours, and icefall's
SPECIAL_LAYOUTS = ((BLANK, UNK), (BLANK, SOS_EOS, UNK))
#: Char tokenizer's word-boundary token (the same glyph SentencePiece uses).
WORD_BOUNDARY = "\u2581"
#: File inside a tokenizer directory that ``load_tokenizer`` reads.
TOKENIZER_FILE = "tokenizer.json"
_FORMAT = "asr_recipes.tokenizer/1"


class Tokenizer(ABC):
    """Common interface. Ids are Python ints; ``ids`` lists are unpadded, no blank."""

    blank_id: int = BLANK_ID
    unk_id: int = UNK_ID

    def __init__(self, settings: dict):
        #: How it was trained (kind, sizes, texts hash); compared for idempotent retraining.
        self.settings = dict(settings)

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids including ``<blk>`` and ``<unk>`` (the joiner's output size V)."""

    @abstractmethod
    def normalize(self, text: str) -> str:
        """The form of ``text`` that ``decode(encode(...))`` reproduces."""

    @abstractmethod
    def _encode_one(self, text: str) -> list[int]: ...

    @abstractmethod
    def _decode_one(self, ids: list[int]) -> str: ...

    @abstractmethod
    def id_to_token(self, token_id: int) -> str: ...

    @abstractmethod
    def to_dict(self) -> dict: ...

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """texts: N strings -> N lists of token ids (length U_n each, no blank, no padding)."""
        if isinstance(texts, str):
            raise TypeError("Tokenizer.encode takes a list of strings; wrap one text as [text]")
        return [self._encode_one(self.normalize(t)) for t in texts]

    def decode(self, ids: Iterable[Iterable[int]]) -> list[str]:
        """N id sequences (lists or 1-D int tensors) -> N texts; blank and unk are dropped."""
        out = []
        for seq in ids:
            seq = [self._check_id(int(i)) for i in seq]
            text = self._decode_one([i for i in seq if i not in (self.blank_id, self.unk_id)])
            # Dropped <unk>s and back-to-back word boundaries leave stray spaces.
            out.append(self.normalize(text))
        return out

    def count_unknown(self, texts: Sequence[str]) -> int:
        """Number of ``<unk>`` tokens ``encode(texts)`` produces (0 when fully covered)."""
        return sum(seq.count(self.unk_id) for seq in self.encode(texts))

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order."""
        return [self.id_to_token(i) for i in range(self.vocab_size)]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write tokenizer.json (last, so its presence means complete), tokens.txt and,
        for SentencePiece, sentencepiece.model into ``out_dir``; each file atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        table = "".join(f"{tok} {i}\n" for i, tok in enumerate(self.tokens))
        write_atomic(out_dir / "tokens.txt", table)
        d = self.to_dict()
        if "model_b64" in d:
            write_atomic(out_dir / "sentencepiece.model", base64.b64decode(d["model_b64"]))
        text = json.dumps(d, ensure_ascii=False, indent=1)
        write_atomic(out_dir / TOKENIZER_FILE, text)
        return out_dir / TOKENIZER_FILE

    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary [0, {self.vocab_size})")
        return token_id


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece model whose id 0 is ``<blk>`` (trained as the pad piece) and id 1 ``<unk>``,
    or an icefall bpe.model (``<blk>``, ``<sos/eos>``, ``<unk>``: see the module docstring)."""

    def __init__(self, model_bytes: bytes, settings: dict):
        super().__init__(settings)
        self._model_bytes = bytes(model_bytes)
        self._sp = spm.SentencePieceProcessor(model_proto=self._model_bytes)
        unk = self._sp.unk_id()
        head = tuple(self._sp.id_to_piece(i) for i in range(min(unk + 1, self._sp.get_piece_size())))
        if head not in SPECIAL_LAYOUTS:
            raise ValueError(
                f"SentencePiece model has id 0 = {self._sp.id_to_piece(0)!r} and unk id {unk} (pieces {list(head)} "
                f"first); expected {list(SPECIAL_LAYOUTS[0])} (or icefall's {list(SPECIAL_LAYOUTS[1])}). Train it with "
                "asr_recipes.data.tokenizer.train_tokenizer."
            )
        self.unk_id = unk

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, model_type: str = "bpe",
              character_coverage: float = 1.0, settings: dict | None = None) -> "SentencePieceTokenizer":
        """Train in memory on ``texts`` (normalised like ``normalize``); vocab_size counts
        ``<blk>`` and ``<unk>``. Raises ValueError when the data cannot fill vocab_size."""
        texts = [_collapse_spaces(t) for t in texts]
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=model, model_type=model_type,
                vocab_size=vocab_size, character_coverage=character_coverage,
                pad_id=BLANK_ID, pad_piece=BLANK, unk_id=UNK_ID, unk_piece=UNK,
                bos_id=-1, eos_id=-1,
                # Identity: keep the corpus' own characters so decode(encode(t)) == t.
                normalization_rule_name="identity",
                num_threads=min(os.cpu_count() or 1, 8), minloglevel=2,
            )
        except RuntimeError as e:
            raise ValueError(
                f"SentencePiece {model_type} training with vocab_size={vocab_size} on "
                f"{len(texts)} texts failed: {e}. If the vocabulary is too large for this "
                "text, lower vocab_size."
            ) from None
        return cls(model.getvalue(), settings or {"kind": model_type, "vocab_size": vocab_size})

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def normalize(self, text: str) -> str:
        return _collapse_spaces(text)

    def _encode_one(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def _decode_one(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def id_to_token(self, token_id: int) -> str:
        self._check_id(token_id)
        return self._sp.id_to_piece(token_id)

    def to_dict(self) -> dict:
        return {
            "format": _FORMAT, "type": "sentencepiece", "settings": self.settings,
            "model_b64": base64.b64encode(self._model_bytes).decode("ascii"),
        }


class CharTokenizer(Tokenizer):
    """One token per character.

    word_boundary=True (English): words are separated by the ``▁`` token, so spaces survive
    a round trip. word_boundary=False (Chinese, unsegmented): whitespace is removed.
    """

    def __init__(self, tokens: Sequence[str], word_boundary: bool, settings: dict):
        super().__init__(settings)
        tokens = list(tokens)
        if not any(tuple(tokens[:len(head)]) == head for head in SPECIAL_LAYOUTS) or len(set(tokens)) != len(tokens):
            raise ValueError(f"char table must start with {BLANK!r}, {UNK!r} (or icefall's {BLANK!r}, {SOS_EOS!r}, "
                             f"{UNK!r}) and have no duplicates")
        self.unk_id = tokens.index(UNK)
        self.word_boundary = bool(word_boundary)
        self._tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def train(cls, texts: Sequence[str], min_count: int = 1, word_boundary: bool = True,
              vocab_size: int | None = None, settings: dict | None = None) -> "CharTokenizer":
        """Characters seen at least ``min_count`` times, in code-point order after
        ``<blk>``, ``<unk>`` (and ``▁``). vocab_size, when given, is an upper bound: a
        larger table raises ValueError instead of silently dropping characters."""
        counts = collections.Counter()
        for t in texts:
            counts.update(c for c in t if not c.isspace() and c != WORD_BOUNDARY)
        chars = sorted(c for c, n in counts.items() if n >= min_count)
        if not chars:
            raise ValueError(f"no character occurs >= {min_count} times in {len(texts)} training texts")
        tokens = [BLANK, UNK] + ([WORD_BOUNDARY] if word_boundary else []) + chars
        if vocab_size is not None and len(tokens) > vocab_size:
            raise ValueError(
                f"the character table has {len(tokens)} tokens (min_count={min_count}), more than "
                f"vocab_size={vocab_size}; raise vocab_size, set it to null, or raise min_count"
            )
        dropped = sum(n for c, n in counts.items() if n < min_count)
        if dropped:
            log.info("char tokenizer: %d character occurrences below min_count=%d map to %s",
                     dropped, min_count, UNK)
        settings = settings or {"kind": "char", "min_count": min_count, "word_boundary": word_boundary}
        return cls(tokens, word_boundary, settings)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def normalize(self, text: str) -> str:
        return _collapse_spaces(text) if self.word_boundary else "".join(text.split())

    def _encode_one(self, text: str) -> list[int]:
        # normalize() left at most single spaces, which become the boundary token.
        return [self._ids.get(WORD_BOUNDARY if c == " " else c, self.unk_id) for c in text]

    def _decode_one(self, ids: list[int]) -> str:
        return "".join(self._tokens[i] for i in ids).replace(WORD_BOUNDARY, " ")

    def id_to_token(self, token_id: int) -> str:
        self._check_id(token_id)
        return self._tokens[token_id]

    def to_dict(self) -> dict:
        return {
            "format": _FORMAT, "type": "char", "settings": self.settings,
            "tokens": list(self._tokens), "word_boundary": self.word_boundary,
        }


def train_tokenizer(kind: str, texts: Iterable[str] | os.PathLike, vocab_size: int | None,
                    *, min_count: int = 1, word_boundary: bool = True,
                    character_coverage: float = 1.0) -> Tokenizer:
    """Train a tokenizer of ``kind`` ("bpe" | "unigram" | "char").

    texts: an iterable of transcripts, or a ``pathlib.Path`` to a UTF-8 file with one per
    line. vocab_size: exact size for bpe/unigram (required); an upper bound for char (None:
    no bound). min_count/word_boundary apply to char, character_coverage to SentencePiece.
    ``settings`` on the result records all of this plus a hash of the texts.
    """
    texts = _training_texts(texts)
    settings = _settings(kind, texts, vocab_size, min_count, word_boundary, character_coverage)
    return _train(kind, texts, settings)


def _train(kind: str, texts: list[str], settings: dict) -> Tokenizer:
    """train_tokenizer on prepared texts with their settings (which carry every option)."""
    if kind == "char":
        return CharTokenizer.train(texts, settings["min_count"], settings["word_boundary"], settings["vocab_size"],
                                   settings)
    return SentencePieceTokenizer.train(texts, settings["vocab_size"], kind, settings["character_coverage"], settings)


def ensure_tokenizer(manifest: str | os.PathLike, out_dir: str | os.PathLike, kind: str,
                     vocab_size: int | None, *, min_count: int = 1, word_boundary: bool = True,
                     character_coverage: float = 1.0, force: bool = False) -> Tokenizer:
    """Train on ``manifest``'s transcripts and save to ``out_dir``, unless out_dir already
    holds a tokenizer with the same settings and training texts (then load and return it).
    A tokenizer there with other settings is an error unless ``force`` (models trained with
    it would silently stop matching it)."""
    out_dir = Path(out_dir)
    texts = _training_texts(read_manifest_texts(manifest))
    settings = _settings(kind, texts, vocab_size, min_count, word_boundary, character_coverage)
    if (out_dir / TOKENIZER_FILE).is_file():
        old = load_tokenizer(out_dir)
        if old.settings == settings:
            log.info("%s is up to date, not retraining", out_dir / TOKENIZER_FILE)
            return old
        if not force:
            changed = sorted(k for k in settings.keys() | old.settings.keys()
                             if settings.get(k) != old.settings.get(k))
            raise FileExistsError(
                f"{out_dir} holds a tokenizer trained with different {', '.join(changed)}; "
                "use another out_dir (e.g. one per vocab size) or pass force=true to overwrite"
            )
        log.warning("force=true: replacing the tokenizer in %s", out_dir)
    log.info("training a %s tokenizer on %d transcripts from %s", kind, len(texts), manifest)
    tok = _train(kind, texts, settings)  # texts and settings as computed above, not twice
    # save() writes tokenizer.json last; a crash must not leave the old one beside new files.
    (out_dir / TOKENIZER_FILE).unlink(missing_ok=True)
    tok.save(out_dir)
    return tok


def _training_texts(texts: Iterable[str] | os.PathLike) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of transcripts or a pathlib.Path, not a str")
    if isinstance(texts, os.PathLike):
        texts = Path(texts).read_text(encoding="utf-8").splitlines()
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no non-empty training texts")
    return texts


def _settings(kind: str, texts: list[str], vocab_size: int | None, min_count: int,
              word_boundary: bool, character_coverage: float) -> dict:
    """Everything that determines the trained tokenizer, including a hash of the texts."""
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    if kind == "char":
        return {"kind": kind, "vocab_size": vocab_size, "min_count": min_count,
                "word_boundary": bool(word_boundary), "texts_sha256": digest}
    if kind in ("bpe", "unigram"):
        if not vocab_size:
            raise ValueError(f"kind={kind} needs vocab_size (e.g. 500)")
        return {"kind": kind, "vocab_size": vocab_size,
                "character_coverage": character_coverage, "texts_sha256": digest}
    raise ValueError(f"unknown tokenizer kind {kind!r}; use 'bpe', 'unigram' or 'char'")


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from ``Tokenizer.to_dict()`` output (e.g. from a checkpoint)."""
    if not isinstance(d, dict) or d.get("format") != _FORMAT:
        raise ValueError(f"not a serialised tokenizer (expected format {_FORMAT!r})")
    if d["type"] == "sentencepiece":
        return SentencePieceTokenizer(base64.b64decode(d["model_b64"]), d["settings"])
    if d["type"] == "char":
        return CharTokenizer(d["tokens"], d["word_boundary"], d["settings"])
    raise ValueError(f"unknown tokenizer type {d['type']!r}")


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load from a directory written by ``Tokenizer.save`` (or its tokenizer.json)."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"{file} not found; train a tokenizer first: python -m asr_recipes.bin.tokenizer "
            f"cuts=<manifest> out_dir={path}"
        )
    return tokenizer_from_dict(json.loads(file.read_text(encoding="utf-8")))


def read_manifest_texts(manifest: str | os.PathLike) -> list[str]:
    """Transcripts of a lhotse supervisions or cuts manifest (.jsonl.gz), in manifest order.
    Supervisions without text are skipped and counted in the log."""
    from lhotse import CutSet, SupervisionSet, load_manifest_lazy

    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} not found")
    items = load_manifest_lazy(manifest)
    if isinstance(items, CutSet):
        sups = (s for cut in items for s in cut.supervisions)
    elif isinstance(items, SupervisionSet):
        sups = iter(items)
    else:
        raise ValueError(f"{manifest} is a {type(items).__name__}; pass a supervisions or cuts manifest")
    texts, empty = [], 0
    for s in sups:
        if s.text and s.text.strip():
            texts.append(s.text)
        else:
            empty += 1
    if empty:
        log.warning("%s: skipped %d supervisions with empty text", manifest, empty)
    if not texts:
        raise ValueError(f"{manifest} has no supervisions with text")
    return texts


def _collapse_spaces(text: str) -> str:
    return " ".join(text.split())



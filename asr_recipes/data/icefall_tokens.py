"""icefall's vocabulary files as this project's tokenizers, with icefall's ids.

* ``bpe.model`` (SentencePiece, icefall's local/train_bpe_model.py: ``<blk>`` 0, ``<sos/eos>`` 1,
  ``<unk>`` 2, a unigram or BPE model with its own normalizer) -> SentencePieceTokenizer on the
  same model bytes: the same ids, the same ``encode`` (the model's normalizer runs) and the same
  text from ``decode`` as icefall's ``sp.decode`` once ``<unk>`` is left out.
* ``tokens.txt`` of a character model (icefall AISHELL's local/prepare_char.py: ``<symbol> <id>``
  lines, ``<blk>`` 0, ``<sos/eos>`` 1, ``<unk>`` 2, one character per token, then the lexicon's
  disambiguation symbols ``#0``, ``#1``... which are no model outputs) -> CharTokenizer
  (no word boundary unless the table has ``▁``): text is the characters joined, as icefall's
  AISHELL decoding writes it.

A BPE tokens.txt (multi-character tokens) cannot encode text by itself: the bpe.model is needed.

    tokenizer = tokenizer_from_icefall("data/lang_bpe_500/bpe.model")   # or .../lang_char/tokens.txt
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from asr_recipes.data.tokenizer import (
    BLANK, SOS_EOS, UNK, WORD_BOUNDARY, CharTokenizer, SentencePieceTokenizer, Tokenizer,
)

#: icefall's lexicon disambiguation symbols at the end of a char tokens.txt (not model outputs)
_DISAMBIGUATION = re.compile(r"#\d+")


class IcefallTokensError(ValueError):
    """An icefall vocabulary file that cannot be used; the message names the file."""


def tokenizer_from_icefall(path: str | os.PathLike) -> Tokenizer:
    """A tokenizer with icefall's ids from its ``bpe.model`` or a character ``tokens.txt``."""
    path = Path(path)
    if not path.is_file():
        raise IcefallTokensError(f"{path}: no such file; give icefall's bpe.model (BPE models) or tokens.txt "
                                 "(character models such as AISHELL's data/lang_char/tokens.txt)")
    data = path.read_bytes()
    settings = {"kind": "icefall", "file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    if path.suffix == ".txt":
        return _char_table(path, data.decode("utf-8"), settings)
    try:
        return SentencePieceTokenizer(data, settings)
    except (ValueError, RuntimeError, OSError) as e:  # sentencepiece raises RuntimeError on non-models
        raise IcefallTokensError(f"{path}: not an icefall SentencePiece model ({e})") from None


def _char_table(path: Path, text: str, settings: dict) -> CharTokenizer:
    table: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise IcefallTokensError(f"{path}:{number}: expected '<symbol> <id>', got {line!r}")
        symbol, token_id = parts[0].strip(), int(parts[1])
        if token_id in table:
            raise IcefallTokensError(f"{path}:{number}: id {token_id} appears twice")
        table[token_id] = symbol
    if sorted(table) != list(range(len(table))):
        raise IcefallTokensError(f"{path}: ids must run from 0 without gaps")
    tokens = [table[i] for i in range(len(table))]
    while tokens and _DISAMBIGUATION.fullmatch(tokens[-1]):
        tokens.pop()
    if tokens[:3] != [BLANK, SOS_EOS, UNK]:
        raise IcefallTokensError(f"{path}: starts with {tokens[:3]}; icefall's token tables start with "
                                 f"{[BLANK, SOS_EOS, UNK]}")
    long = [t for t in tokens[3:] if len(t) != 1]
    if long:
        raise IcefallTokensError(f"{path} holds multi-character tokens ({', '.join(long[:5])}): a BPE model's "
                                 "table, which cannot encode text by itself; give the model's bpe.model instead")
    return CharTokenizer(tokens, word_boundary=WORD_BOUNDARY in tokens, settings=settings)

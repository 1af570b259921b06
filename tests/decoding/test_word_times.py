"""Word grouping for char, SentencePiece and Chinese character tokens, and the frame ->
seconds convention written out by hand."""

import pytest

from asr_recipes.data.tokenizer import CharTokenizer, SentencePieceTokenizer
from asr_recipes.decoding.word_times import group_words, token_times, word_times

TEXTS = ["HELLO WORLD", "HELLO THERE", "WORLD WIDE WEB", "THE OTHER WORLD", "WHERE HERE"] * 20


def test_char_tokens_split_at_the_boundary_token_which_times_no_word():
    pieces = ["H", "I", "▁", "Y", "O", "U"]
    frames = [1, 2, 4, 9, 9, 11]
    assert group_words(pieces, frames, per_token=False) == [("HI", 1, 2), ("YOU", 9, 11)]
    assert group_words(["▁", "A", "▁", "▁"], [0, 3, 4, 5], per_token=False) == [("A", 3, 3)]


def test_sentencepiece_pieces_start_words_with_their_prefix():
    pieces = ["▁HE", "LLO", "▁", "W", "▁THE", "RE"]
    frames = [0, 2, 3, 5, 7, 8]
    assert group_words(pieces, frames, per_token=False) == [("HELLO", 0, 2), ("W", 5, 5), ("THERE", 7, 8)]


def test_each_character_is_a_word_without_word_boundaries():
    assert group_words(["今", "天", "好"], [1, 1, 4], per_token=True) == [("今", 1, 1), ("天", 1, 1), ("好", 4, 4)]


@pytest.mark.parametrize("kind", ["char", "bpe", "chinese"])
def test_words_are_the_decoded_text(kind):
    if kind == "char":
        tok, text = CharTokenizer.train(TEXTS, word_boundary=True), "THE OTHER WORLD WIDE"
    elif kind == "bpe":
        tok, text = SentencePieceTokenizer.train(TEXTS, vocab_size=30), "WHERE THE WORLD HELLO"
    else:
        tok, text = CharTokenizer.train(["今天天气很好"], word_boundary=False), "今天 很好"
    ids = tok.encode([text])[0]
    frames = list(range(0, 2 * len(ids), 2))
    words = word_times(tok, ids, frames, lookahead_frames=3)
    expected = list("今天很好") if kind == "chinese" else tok.decode([ids])[0].split()
    assert [w.word for w in words] == expected
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))
    assert [t.token for t in token_times(tok, ids, frames)] == [tok.id_to_token(i) for i in ids]
    with pytest.raises(ValueError, match="timestamps"):
        word_times(tok, ids, frames[:-1], lookahead_frames=3)


def test_seconds_follow_the_front_end_geometry():
    """Conformer frame t: fbank frames 4t..4t+6, i.e. [40 t, 40 t + 70) ms; Zipformer frame t:
    fbank frames 4t..4t+16, [40 t, 40 t + 170) ms; words span their tokens' frames."""
    tok = CharTokenizer.train(["AB C"], word_boundary=True)
    ids = tok.encode(["AB C"])[0]  # A B ▁ C
    words = word_times(tok, ids, [3, 5, 9, 9], lookahead_frames=3)
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in words] == [("AB", 0.12, 0.27), ("C", 0.36, 0.43)]
    words = word_times(tok, ids, [3, 5, 9, 9], lookahead_frames=13)
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in words] == [("AB", 0.12, 0.37), ("C", 0.36, 0.53)]
    assert [round(t.time, 6) for t in token_times(tok, ids, [3, 5, 9, 9])] == [0.12, 0.2, 0.36, 0.36]

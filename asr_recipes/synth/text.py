"""Seeded sentence generators for the synthesized-speech corpora.

A :class:`Grammar` is a set of weighted templates such as ``"DIAL {digit} {digit}"``;
each ``{slot}`` is filled with one entry of a word list (an entry may hold several
words, or be empty to make the slot optional). Word lists live here, in the repo, so
a corpus is fully described by (task, sizes, seed).

Held-out sentences: every distinct sentence is assigned to exactly one split by a
seeded hash of its words (about 5% dev, 5% test, 90% train), and a split only accepts
sentences from its own bucket. So dev/test sentences are word combinations never seen
in training, while all splits share the same templates and word distribution (the
words of a held-out sentence occur in many training sentences).

English grammars produce upper-case words (LibriSpeech transcripts); the Mandarin
grammar produces space-separated Chinese words (AISHELL transcripts).

Language-model text: ``write_training_text`` writes sentences of a task's *train* split to a
file (``python -m asr_recipes.bin.synthesize_text``). With the seed the corpus was synthesized
with, no dev or test sentence can be among them, so an LM trained on the file never saw a
sentence it is tested on.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from asr_recipes.atomic_files import write_atomic

SPLITS = ("train", "dev", "test")

#: Out of 20 hash buckets: bucket 0 is dev, bucket 1 is test, the rest is train.
_NUM_BUCKETS = 20
_BUCKET_SPLIT = {0: "dev", 1: "test"}

#: Draws allowed per accepted sentence before a grammar is declared too small.
_MAX_DRAWS_PER_SENTENCE = 1000

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Grammar:
    """Weighted templates over named word lists.

    templates: (pattern, weight) pairs; a pattern is words and ``{slot}`` names.
    slots: slot name -> entries; an entry is zero or more space-separated words.
    """

    templates: tuple[tuple[str, float], ...]
    slots: Mapping[str, tuple[str, ...]]

    def expand(self, rng: random.Random) -> str:
        """One sentence: a weighted template with every slot drawn uniformly."""
        patterns = [pattern for pattern, _ in self.templates]
        weights = [weight for _, weight in self.templates]
        pattern = rng.choices(patterns, weights=weights)[0]
        filled = _SLOT.sub(lambda m: rng.choice(self.slots[m.group(1)]), pattern)
        return " ".join(filled.split())  # drop the gaps left by empty entries

    def vocabulary(self) -> set[str]:
        """Every word a sentence of this grammar can contain."""
        words = set()
        for pattern, _ in self.templates:
            words.update(_SLOT.sub(" ", pattern).split())
            for name in _SLOT.findall(pattern):
                for entry in self.slots[name]:
                    words.update(entry.split())
        return words


def split_of(sentence: str, seed: int) -> str:
    """The only split ("train", "dev" or "test") that may contain ``sentence``."""
    digest = hashlib.sha256(f"{seed}\t{sentence}".encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % _NUM_BUCKETS
    return _BUCKET_SPLIT.get(bucket, "train")


def sample_sentences(grammar: Grammar, split: str, count: int, seed: int) -> list[str]:
    """``count`` sentences for ``split`` (repeats allowed), deterministic in ``seed``.

    Only sentences whose hash bucket is ``split`` are kept, so the three splits never
    share a sentence. Raises ValueError if the grammar cannot supply them.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"{seed}/{split}")  # str seeds hash deterministically
    sentences: list[str] = []
    draws = 0
    while len(sentences) < count:
        sentence = grammar.expand(rng)
        draws += 1
        if split_of(sentence, seed) == split:
            sentences.append(sentence)
        elif draws > _MAX_DRAWS_PER_SENTENCE * (count + 1):
            raise ValueError(
                f"grammar yields too few {split} sentences ({len(sentences)} of {count} "
                f"after {draws} draws); add templates or words"
            )
    return sentences


def write_training_text(path: str | os.PathLike, task: str, count: int, seed: int) -> Path:
    """``count`` sentences of ``task``'s train split (repeats allowed, as in the corpus), one per
    line, written atomically to ``path``. ``seed``: the corpus' synthesis seed, which decides
    the split of every sentence."""
    if task not in GRAMMARS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(GRAMMARS)}")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    sentences = sample_sentences(GRAMMARS[task], "train", count, seed)
    return write_atomic(path, "".join(s + "\n" for s in sentences))


# --------------------------------------------------------------------------------------
# English "commands": spoken commands and digit strings over 47 words. Digit strings
# have at least five digits (seven alone) so that fast speakers still take 1.5 s.
_DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "OH")
COMMANDS = Grammar(
    templates=(
        ("DIAL {digit} {digit} {digit} {digit} {digit} {digit_opt} {digit_opt}", 3.0),
        ("{please} CALL {digit} {digit} {digit} {digit} {digit} {digit_opt}", 2.0),
        ("{digit} {digit} {digit} {digit} {digit} {digit} {digit}", 2.0),
        ("{please} SET A TIMER FOR {amount} {unit} {now}", 2.0),
        ("{please} SET THE ALARM FOR {hour} {minute} {now}", 1.5),
        ("{please} TURN {on_off} THE {device} IN THE {room}", 1.5),
        ("{please} TURN THE {device} {on_off} IN THE {room}", 1.0),
        ("{please} TURN THE VOLUME {up_down} IN THE {room} {now}", 1.0),
        ("{please} {play_stop} THE {media} IN THE {room} {now}", 1.0),
        ("{please} {open_close} THE {opening} IN THE {room} {now}", 1.0),
    ),
    slots={
        "digit": _DIGITS,
        "digit_opt": _DIGITS + ("",) * 6,
        "please": ("PLEASE", ""),
        "now": ("NOW", ""),
        "amount": _DIGITS[1:10] + ("TEN", "FIFTEEN", "TWENTY", "THIRTY", "TWENTY FIVE"),
        "unit": ("MINUTES", "SECONDS"),
        "hour": _DIGITS[1:10] + ("TEN",),
        "minute": ("OH FIVE", "FIFTEEN", "THIRTY", "FORTY FIVE", "TWENTY", "TEN"),
        "on_off": ("ON", "OFF"),
        "up_down": ("UP", "DOWN"),
        "device": ("LIGHTS", "RADIO", "MUSIC"),
        "media": ("MUSIC", "RADIO"),
        "play_stop": ("PLAY", "STOP"),
        "opening": ("DOOR", "WINDOW"),
        "open_close": ("OPEN", "CLOSE"),
        "room": ("KITCHEN", "BEDROOM", "OFFICE"),
    },
)

# --------------------------------------------------------------------------------------
# English "sentences": everyday sentences over ~290 words.
_SUBJECTS = (
    "MY BROTHER", "MY SISTER", "OUR TEACHER", "THE DOCTOR", "HER FRIEND", "HIS FATHER",
    "MY MOTHER", "THE CHILDREN", "OUR NEIGHBOR", "THE DRIVER", "THE OLD MAN", "THE BAKER",
    "THEIR COUSIN", "THE MANAGER", "THE STUDENTS", "MY UNCLE", "YOUR AUNT", "THE FARMER",
    "THE NURSE", "A YOUNG WOMAN", "THE POLICE OFFICER", "MY GRANDMOTHER", "THE WAITER",
    "HIS WIFE", "THE LITTLE BOY", "THE PILOT",
)
_VERBS_PAST = (
    "BOUGHT", "FOUND", "SOLD", "CARRIED", "PAINTED", "CLEANED", "FIXED", "LOST", "OPENED",
    "WASHED", "BORROWED", "DROPPED", "BROUGHT", "TOOK", "MADE", "ORDERED", "PACKED",
    "CHECKED", "MOVED", "HID", "SHOWED", "DELIVERED", "WRAPPED", "RETURNED", "FORGOT",
    "KEPT", "SENT", "PUSHED", "PULLED", "REPAIRED",
)
_VERBS_BASE = (
    "BUY", "FIND", "SELL", "CARRY", "PAINT", "CLEAN", "FIX", "OPEN", "WASH", "BORROW",
    "BRING", "TAKE", "ORDER", "PACK", "CHECK", "MOVE", "SHOW", "DELIVER", "WRAP", "RETURN",
    "KEEP", "SEND", "PUSH", "PULL", "REPAIR", "LEAVE",
)
# No "A": every determiner fits every noun, with or without an adjective.
_DETERMINERS = ("THE", "HER", "HIS", "OUR", "THEIR", "THAT", "THIS", "MY", "YOUR")
_ADJECTIVES = (
    "", "", "RED", "BLUE", "GREEN", "YELLOW", "BLACK", "WHITE", "OLD", "NEW", "BIG", "SMALL",
    "HEAVY", "CHEAP", "WOODEN", "BROKEN", "PRETTY", "DIRTY", "EMPTY", "FAVORITE", "LARGE",
)
_NOUNS = (
    "BOOK", "LETTER", "BOX", "CHAIR", "TABLE", "LAMP", "BICYCLE", "UMBRELLA", "BASKET",
    "BOTTLE", "CUP", "PLATE", "KNIFE", "BAG", "COAT", "HAT", "SHOE", "KEY", "CAMERA",
    "RADIO", "CLOCK", "PAINTING", "MAP", "TICKET", "PHONE", "COMPUTER", "GUITAR", "BLANKET",
    "PILLOW", "CARPET", "CAKE", "BREAD", "APPLE", "VASE", "PACKAGE", "SUITCASE",
    "WALLET", "NOTEBOOK", "PENCIL", "JACKET", "SCARF", "MIRROR", "BUCKET", "LADDER",
    "CANDLE", "TEAPOT", "SANDWICH", "NEWSPAPER", "PHOTOGRAPH", "TOOLBOX",
)
_PLACE_NOUNS = (
    "STATION", "MARKET", "SCHOOL", "LIBRARY", "OFFICE", "HOSPITAL", "PARK", "KITCHEN",
    "GARDEN", "GARAGE", "BANK", "HOTEL", "AIRPORT", "BEACH", "CHURCH", "MUSEUM", "BRIDGE",
    "HARBOR", "FACTORY", "BAKERY", "STADIUM", "THEATER", "VILLAGE", "CORNER", "HALLWAY",
)
_PREPOSITIONS = ("AT", "NEAR", "BEHIND", "INSIDE", "OUTSIDE")
_PAST_TIMES = (
    "YESTERDAY", "LAST NIGHT", "THIS MORNING", "LAST WEEK", "ON MONDAY", "ON TUESDAY",
    "ON WEDNESDAY", "ON THURSDAY", "ON FRIDAY", "ON SATURDAY", "ON SUNDAY", "AFTER LUNCH",
    "BEFORE DINNER", "AN HOUR AGO", "TWO DAYS AGO", "IN THE EVENING", "EARLY TODAY",
)
_FUTURE_TIMES = (
    "TOMORROW", "TONIGHT", "NEXT WEEK", "ON MONDAY", "ON FRIDAY", "ON SUNDAY", "AFTER LUNCH",
    "BEFORE DINNER", "IN THE MORNING", "THIS AFTERNOON", "NEXT MONTH", "LATER TODAY", "SOON",
)
SENTENCES = Grammar(
    templates=(
        ("{subject} {verb_past} {determiner} {adjective} {noun} {place}", 3.0),
        ("{subject} {verb_past} {determiner} {adjective} {noun} {past_time}", 3.0),
        ("{subject} {modal} {verb_base} {determiner} {adjective} {noun} {future_time}", 3.0),
        ("DID {pronoun} {verb_base} {determiner} {adjective} {noun} {place}", 1.5),
        ("WHY DID {subject} {verb_base} {determiner} {noun} {past_time}", 1.0),
        ("{we} {need} TO {verb_base} {determiner} {noun} {future_time}", 1.5),
        ("{subject} {travelled} TO THE {place_noun} BY {transport} {past_time}", 2.0),
        ("THE WEATHER WILL BE {weather} AND {weather} {future_time}", 1.0),
        ("IT WAS {weather} AND {weather} {place} {past_time}", 1.0),
        ("PLEASE {verb_base} {determiner} {adjective} {noun} TO THE {place_noun}", 1.0),
    ),
    slots={
        "subject": _SUBJECTS,
        "pronoun": ("YOU", "HE", "SHE", "THEY", "WE"),
        "we": ("I", "WE", "THEY", "YOU"),  # subjects of the plural verb forms below
        "verb_past": _VERBS_PAST,
        "verb_base": _VERBS_BASE,
        "determiner": _DETERMINERS,
        "adjective": _ADJECTIVES,
        "noun": _NOUNS,
        "place": tuple(f"{p} THE {n}" for p in _PREPOSITIONS for n in _PLACE_NOUNS),
        "place_noun": _PLACE_NOUNS,
        "past_time": _PAST_TIMES,
        "future_time": _FUTURE_TIMES,
        "modal": ("WILL", "MUST", "CAN", "SHOULD", "MIGHT", "WANTS TO", "PROMISED TO"),
        "need": ("NEED", "WANT", "HAVE", "PLAN", "HOPE", "FORGOT"),
        "travelled": ("WENT", "CAME", "TRAVELED", "RETURNED", "HURRIED", "GOT"),
        "transport": ("BUS", "TRAIN", "CAR", "BIKE", "TAXI", "BOAT", "PLANE", "FERRY"),
        "weather": ("COLD", "WARM", "SUNNY", "RAINY", "WINDY", "CLOUDY", "FOGGY", "HOT", "DRY",
                    "WET", "QUIET", "CALM", "STORMY", "BRIGHT", "DARK", "PLEASANT"),
    },
)

# --------------------------------------------------------------------------------------
# Mandarin: everyday sentences as space-separated words (AISHELL transcript style).
_ZH_SUBJECTS = ("我", "你", "他", "她", "我们", "他们", "老师", "妈妈", "爸爸", "朋友",
                "同学", "医生", "姐姐", "弟弟")
_ZH_TIMES = ("今天", "明天", "昨天", "早上", "晚上", "下午", "周末", "现在", "中午")
_ZH_ACTIVITIES = (
    "去 公园", "去 学校", "去 商店", "去 医院", "吃 米饭", "吃 面条", "吃 水果", "喝 茶",
    "喝 咖啡", "看 电影", "看 书", "看 电视", "买 水果", "买 衣服", "买 菜", "打 电话",
    "写 作业", "听 音乐", "学习 中文", "坐 公交车", "坐 地铁", "做 饭", "打 篮球",
    "在 公园 跑步", "去 海边 游泳", "在 家 唱歌", "洗 衣服", "打扫 房间",
)
MANDARIN = Grammar(
    templates=(
        ("{subject} {time} {want} {activity}", 3.0),
        ("{subject} {time} {adverb} {activity}", 2.0),
        ("{subject} {adverb} 喜欢 {activity}", 2.0),
        ("{time} 的 天气 {degree} {weather}", 1.0),
        ("{subject} 觉得 这个 {thing} {degree} {quality}", 1.5),
    ),
    slots={
        "subject": _ZH_SUBJECTS,
        "time": _ZH_TIMES,
        "activity": _ZH_ACTIVITIES,
        "want": ("想", "要", "打算", "准备", "喜欢"),
        "adverb": ("也", "都", "经常", "一起", "不"),
        "degree": ("很", "非常", "有点", "比较", "特别"),
        "weather": ("好", "冷", "热", "暖和", "凉快"),
        "thing": ("房间", "电影", "饭店", "城市", "手机", "问题", "故事"),
        "quality": ("好", "大", "小", "贵", "便宜", "有意思", "漂亮", "干净"),
    },
)

#: Task name -> grammar. "commands" and "sentences" are the English presets.
GRAMMARS: Mapping[str, Grammar] = {
    "commands": COMMANDS,
    "sentences": SENTENCES,
    "mandarin": MANDARIN,
}

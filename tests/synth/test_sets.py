"""The synthesized evaluation sets (word gaps, biasing) built for real with espeak-ng + sox.

The word boundaries the word-gaps set records are checked against its own audio: inside the
recorded gaps there is only the -80 dB noise floor, inside each word there is speech.
"""

import numpy as np
from lhotse import load_manifest

from asr_recipes.data.manifests import manifest_path
from asr_recipes.synth import biasing, word_gaps


def test_word_gaps_set_records_the_silences_its_audio_has(tmp_path):
    cuts_path = word_gaps.build(tmp_path, num=2, num_speakers=2)
    cuts = load_manifest(cuts_path)
    assert len(cuts) == 2
    for cut in cuts:
        (sup,) = cut.supervisions
        words = sup.alignment["word"]
        assert [w.symbol for w in words] == sup.text.split()
        audio = cut.recording.load_audio()[0]
        rate = cut.recording.sampling_rate
        peak = np.abs(audio).max()
        for before, after in zip(words, words[1:]):
            gap = after.start - before.end
            assert 0.15 - 1e-3 <= gap <= 0.6 + 1e-3  # the default gaps
            silence = audio[int(before.end * rate) + 1 : int(after.start * rate) - 1]
            assert np.abs(silence).max() < 0.01 * peak, (cut.id, before.symbol, after.symbol)
        for w in words:
            speech = audio[int(w.start * rate) : int(w.end * rate)]
            assert np.abs(speech).max() >= 0.01 * peak, (cut.id, w.symbol)


def test_biasing_set_writes_both_parts_and_the_hotwords(tmp_path):
    hotwords = biasing.build(tmp_path, num=2, num_speakers=2)
    names = hotwords.read_text().split()
    assert names
    hot = load_manifest(manifest_path(tmp_path / "fbank", "librispeech", "cuts", biasing.HOT_PART))
    plain = load_manifest(manifest_path(tmp_path / "fbank", "librispeech", "cuts", biasing.PLAIN_PART))
    assert len(hot) == len(plain) == 2
    assert all(any(n in c.supervisions[0].text.split() for n in names) for c in hot)
    assert not any(n in c.supervisions[0].text.split() for n in names for c in plain)

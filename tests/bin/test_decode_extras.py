"""bin.decode's CTM, n-best and hotword files on a tiny trained model: they agree with the
recogs file, n-best lists are ordered, hotwords at score 0 change nothing but still count
recall, and options that cannot work together fail with one clear message."""

import pytest
from lhotse import load_manifest

from asr_recipes.scoring import read_recogs
from asr_recipes.scoring.ctm import read_ctm
from tests.bin.test_decode import decode_args
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import lower_blank_logit, trained_exp

MBS = "modified_beam_search"


def read_nbest(path):
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["utterance", "rank", "score", "log_prob", "hotword_bonus", "lm_score", "num_tokens", "text"]
    out = {}
    for utt, rank, score, log_prob, bonus, lm_score, num_tokens, text in rows[1:]:
        out.setdefault(utt, []).append((int(rank), float(score), float(log_prob), float(bonus), text,
                                        int(num_tokens), float(lm_score)))
    return out


def test_ctm_nbest_and_hotword_files(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    lower_blank_logit(exp)
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", f"methods=[{MBS}]", "beam=4",
                                                     "max_sym_per_frame=2", "nbest=3"))
    key = "epoch-3-avg-1-use-averaged-model-beam-4-max-sym-per-frame-2"
    recogs = read_recogs(exp / MBS / f"recogs-test-clean-{key}-nbest-3.txt")
    hyps = {u: hyp for u, _, hyp in recogs}
    assert len({tuple(h) for h in hyps.values()}) > 1
    # CTM: the recogs' words, in order, with times inside the cut
    ctm = read_ctm(exp / MBS / f"ctm-test-clean-{key}-nbest-3.ctm")
    durations = {c.id: c.duration for c in load_manifest(tiny_corpus.fbank / "librispeech_cuts_test-clean.jsonl.gz")}
    for utt, hyp in hyps.items():
        words = ctm.get(utt, [])
        assert [w for w, _, _ in words] == hyp
        assert all(0 <= s < e <= durations[utt] + 0.08 for _, s, e in words)  # + one frame: the last one's end
        assert all(a[1] <= b[1] for a, b in zip(words, words[1:]))
    # n-best: up to 3 per utterance, ranked by score, the best one is the recogs hypothesis
    nbest = read_nbest(exp / MBS / f"nbest-test-clean-{key}-nbest-3.txt")
    assert nbest.keys() == hyps.keys() and max(len(v) for v in nbest.values()) == 3
    for utt, rows in nbest.items():
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        per_symbol = [r[1] / (r[5] + 2) for r in rows]  # ranked by score per symbol (context size 2)
        assert per_symbol == sorted(per_symbol, reverse=True)
        assert rows[0][4].split() == hyps[utt] and len({r[4] for r in rows}) == len(rows)
        assert all(r[3] == 0.0 and r[6] == 0.0 and r[1] == r[2] for r in rows)  # no hotwords, no LM: no bonus

    # hotwords at score 0: the same hypotheses as without, their recall still counted
    spoken = sorted({w for _, ref, _ in recogs for w in ref})[:3]
    (tmp_path / "hot.txt").write_text("\n".join(spoken) + "\n")
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", f"methods=[{MBS}]", "beam=4",
                                                     "max_sym_per_frame=2", f"hotwords_file={tmp_path / 'hot.txt'}",
                                                     "hotwords_score=0"))
    out = capsys.readouterr().out
    [zero] = (exp / MBS).glob(f"recogs-test-clean-{key}-hotwords-*.txt")
    assert {u: h for u, _, h in read_recogs(zero)} == hyps
    occurrences = sum(ref.count(w) for _, ref, _ in recogs for w in spoken)
    assert f"/ {occurrences} occurrences of 3 phrases]" in out and "%HOTWORDS test-clean modified_beam_search" in out
    # a large score: another key, and every hypothesis at least as rich in hotwords
    run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", f"methods=[{MBS}]", "beam=4",
                                                     "max_sym_per_frame=2", f"hotwords_file={tmp_path / 'hot.txt'}",
                                                     "hotwords_score=3"))
    files = sorted((exp / MBS).glob(f"recogs-test-clean-{key}-hotwords-*.txt"))
    assert len(files) == 2
    [biased] = [f for f in files if f != zero]
    count = sum(" ".join(h).count(w) for _, _, h in read_recogs(biased) for w in spoken)
    assert count > sum(" ".join(h).count(w) for h in hyps.values() for w in spoken)


@pytest.mark.parametrize("extra,message", [
    (("methods=[greedy_search]", "hotwords_file=HOT"), "greedy_search does not use hotwords"),
    (("methods=[greedy_search]", "nbest=2"), "greedy_search keeps one hypothesis"),
    ((f"methods=[{MBS}]", "hotwords_file=MISSING"), "none.txt: cannot read the hotwords file"),
])
def test_bad_combinations_exit_with_one_message(tiny_corpus, tmp_path_factory, tmp_path, extra, message):
    exp = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "exp")
    (tmp_path / "hot.txt").write_text("CALL\n")
    extra = [e.replace("HOT", str(tmp_path / "hot.txt")).replace("MISSING", str(tmp_path / "none.txt"))
             for e in extra]
    with pytest.raises(AssertionError, match=f"exited with decode: .*{message}"):
        run_entry("asr_recipes.bin.decode", *decode_args(tiny_corpus, exp, "epoch=3", *extra))

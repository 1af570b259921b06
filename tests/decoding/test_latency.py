"""Streaming latency pieces: the forced alignment against an exhaustive search over
alignments, emission delays worked out by hand, and the report's WER against bin.decode's."""

import itertools
import re

import pytest
import torch

from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.data.tokenizer import CharTokenizer
from asr_recipes.decoding import DecodingOptions, make_search
from asr_recipes.decoding.latency import emission_delays, forced_alignment, percentile
from asr_recipes.decoding.options import DecodingResult, Hypothesis
from asr_recipes.decoding.streaming import StreamingRecognizer
from asr_recipes.models.build import build_transducer
from asr_recipes.scoring import read_wer_summary
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import lower_blank_logit, trained_exp

TINY = dict(d_model=16, num_heads=2, ff_dim=32, num_layers=1, kernel_size=3, dropout=0.0, subsampling_channels=4,
            conv_norm="layer", decoder_dim=16, context_size=2, joiner_dim=16)


@torch.no_grad()
def brute_force_alignment(model, features, tokens):
    """Frames of the best alignment, by trying every way to spread the tokens over the frames
    (each frame emits some tokens, then a blank)."""
    enc, lens = model.encode(features[None], torch.tensor([features.size(0)]))
    T, U, c = int(lens[0]), len(tokens), model.decoder.context_size

    def log_probs(t, emitted):
        ctx = ([0] * c + list(tokens[:emitted]))[-c:]
        dec = model.decoder(torch.tensor([ctx]), need_pad=False)[:, 0]
        return model.joiner(enc[0, t][None], dec)[0].log_softmax(-1)

    best, best_frames = -float("inf"), None
    for counts in itertools.product(range(U + 1), repeat=T):
        if sum(counts) != U:
            continue
        score, emitted, frames = 0.0, 0, []
        for t, k in enumerate(counts):
            for _ in range(k):
                score += float(log_probs(t, emitted)[tokens[emitted]])
                emitted += 1
                frames.append(t)
            score += float(log_probs(t, emitted)[0])
        if score > best:
            best, best_frames = score, frames
    return best_frames


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forced_alignment_is_the_best_alignment(seed):
    torch.manual_seed(seed)
    model = build_transducer(TINY, 6).eval()
    with torch.no_grad():
        model.joiner.output_linear.weight.mul_(3.0)
    features = torch.randn(27, NUM_MEL_BINS)  # 5 encoder frames
    tokens = [2, 5, 3]
    assert forced_alignment(model, features, tokens) == brute_force_alignment(model, features, tokens)


def test_emission_delays_by_hand():
    tok = CharTokenizer.train(["AB C", "X"], word_boundary=True)
    A, B, X, C = (tok.encode([ch])[0][0] for ch in "ABXC")
    space = tok.encode(["A B"])[0][1]
    torch.manual_seed(0)
    model = build_transducer({**TINY, "causal": True}, tok.vocab_size).eval()
    rec = StreamingRecognizer(model, make_search(model, DecodingOptions()), chunk_size=2, left_context=4)
    ref_tokens, ref_frames = [A, B, space, C], [1, 2, 3, 5]  # "AB" ends on frame 2, "C" on frame 5
    # reference ends: 40 t + 70 ms = 0.15 s and 0.27 s
    hyp = DecodingResult((Hypothesis((A, B, space, C), 0.0, (1, 3, 4, 6)),))
    # "AB": frame 3 = chunk 1, window = feature frames 8..18, frame 18's window ends at 18 * 10 ms + 17.5 ms
    # "C": frame 6 = chunk 3, feature frames 24..34 -> 0.3575 s
    assert emission_delays(tok, ref_tokens, ref_frames, hyp, rec, num_frames=100, ref_lookahead_frames=3) == pytest.approx(
        [0.1975 - 0.15, 0.3575 - 0.27])
    # a stream of 30 fbank frames: its last chunk ran when the audio ended (frame 29: 0.3075 s)
    assert emission_delays(tok, ref_tokens, ref_frames, hyp, rec, num_frames=30, ref_lookahead_frames=3) == pytest.approx(
        [0.1975 - 0.15, 0.3075 - 0.27])
    # a misrecognized word is not timed
    wrong = DecodingResult((Hypothesis((A, X, space, C), 0.0, (1, 3, 4, 6)),))
    assert emission_delays(tok, ref_tokens, ref_frames, wrong, rec, num_frames=100, ref_lookahead_frames=3) == pytest.approx([0.0875])
    # a Zipformer reference: its frames' audio ends 100 ms later (look-ahead 13 frames, not 3)
    assert emission_delays(tok, ref_tokens, ref_frames, hyp, rec, num_frames=100, ref_lookahead_frames=13) == \
        pytest.approx([0.1975 - 0.25, 0.3575 - 0.37])


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.9) == 9.0 and percentile(values, 0.5) == 5.0 and percentile(values, 1.0) == 10.0
    assert percentile([3.0], 0.9) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.9)


def test_report_wer_equals_streaming_decode(tiny_corpus, tmp_path_factory, tmp_path, capsys):
    streaming = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "stream", causal=True,
                            decoding={"chunk_size": 4, "left_context": 16})
    offline = trained_exp(tiny_corpus, tmp_path_factory, tmp_path / "offline")
    lower_blank_logit(streaming, 2.0)
    data = (f"data.manifest_dir={tiny_corpus.fbank}", "data.corpus=librispeech", "data.test_parts=[test-clean]",
            "data.num_workers=0", "data.max_duration=30", "device=cpu")
    run_entry("asr_recipes.bin.decode", f"exp_dir={streaming}", "epoch=3", "methods=[greedy_search]",
              "streaming=true", "chunk_size=2", *data)
    [summary] = (streaming / "greedy_search").glob("wer-summary-test-clean-*chunk-2-left-16-streaming.txt")
    want = next(iter(read_wer_summary(summary).values()))
    out = tmp_path / "report.md"
    run_entry("asr_recipes.bin.streaming_report", f"checkpoint={streaming / 'epoch-3.pt'}",
              f"reference={offline / 'epoch-3.pt'}", "chunk_sizes=[2,4]", "methods=[greedy_search]", f"out={out}",
              "name=tiny", *data)
    text = out.read_text()
    rows = re.findall(r"^\| tiny \| (\d+) \| greedy_search \| ([\d.]+) \|.*\| (\d+) / (\d+) \|$", text, re.MULTILINE)
    assert [r[0] for r in rows] == ["80", "160"]
    assert float(rows[0][1]) == pytest.approx(want, abs=0.01)
    assert all(int(timed) <= int(ref) for _, _, timed, ref in rows)
    assert text in capsys.readouterr().out

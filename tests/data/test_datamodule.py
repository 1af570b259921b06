"""DataModule: filters, rank-aware sampling, mid-epoch resume, batch layout, augmentation."""

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, MonoCut, Recording, SupervisionSegment
from omegaconf import OmegaConf

from asr_recipes.data.datamodule import DataConfig, DataModule
from asr_recipes.data.filters import FilterConfig, scan_cuts
from asr_recipes.data.tokenizer import CharTokenizer
from tests.data.corpus_layouts import tone

REPO = Path(__file__).resolve().parents[2]
WORDS = ["abc", "de", "cab", "bead", "ace", "dab"]
MIN_DUR, MAX_DUR = 1.0, 3.5


def _normal(i: int) -> tuple[str, float, str]:
    return f"tr{i:02d}", 1.0 + 0.1 * i, " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 3))


# (id, duration s, text) per part. Specials: see expected_kept() for what each should hit.
PARTS = {
    "train": [_normal(i) for i in range(20)] + [
        ("short", 0.5, "ab"), ("long", 3.6, "ab"), ("empty", 1.5, "  "),
        ("dense", 1.2, "abcde " * 6), ("unknown", 1.4, "abz cd"),
    ],
    "dev": [("d0", 1.3, "abc de"), ("d1", 2.0, "bead"), ("dshort", 0.5, "ab"), ("dlong", 3.8, "de"),
            ("dempty", 1.1, ""), ("ddense", 1.2, "abcde " * 6)],
    "test": [("t0", 1.5, "cab"), ("tempty", 1.1, ""), ("tdense", 1.2, "abcde " * 6), ("tiny", 0.05, "a")],
}


def encoder_frames(num_frames: int) -> int:
    """Two stride-2, kernel-3 convolutions without padding, written out independently."""
    t = num_frames
    for _ in range(2):
        t = (t - 3) // 2 + 1
    return t


def expected_kept(cuts, tokenizer, mode: str) -> set[str]:
    kept = set()
    for cut in cuts:
        text = cut.supervisions[0].text.strip()
        n_tokens = len(tokenizer.encode([text])[0])
        t_enc = encoder_frames(cut.num_frames)
        if mode == "test":
            ok = t_enc >= 1
        else:
            ok = bool(text) and t_enc >= n_tokens
            if mode == "train":
                ok = ok and MIN_DUR <= cut.duration <= MAX_DUR
        if ok:
            kept.add(cut.id)
    return kept


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Cut manifests with fbank features, made with lhotse directly (not our fbank stage)."""
    root = tmp_path_factory.mktemp("toy")
    extractor = Fbank(FbankConfig(num_filters=80))
    seed = 0
    all_parts = dict(PARTS, noise=[("n0", 3.0, None), ("n1", 2.0, None)])
    for part, utts in all_parts.items():
        cuts = []
        with LilcomChunkyWriter(root / f"feats_{part}") as writer:
            for uid, duration, text in utts:
                path = root / f"{uid}.wav"
                sf.write(path, tone(duration, seed), 16000, subtype="PCM_16")
                seed += 1
                rec = Recording.from_file(path, recording_id=uid)
                sups = [] if text is None else [
                    SupervisionSegment(id=uid, recording_id=uid, start=0, duration=rec.duration, text=text)
                ]
                cut = MonoCut(id=uid, start=0, duration=rec.duration, channel=0, recording=rec, supervisions=sups)
                cuts.append(cut.compute_and_store_features(extractor, writer))
        prefix = "musan" if part == "noise" else "toy"
        CutSet.from_cuts(cuts).to_file(root / f"{prefix}_cuts_{part}.jsonl.gz")
    train_texts = [t for _, _, t in PARTS["train"] if "z" not in t]
    tokenizer = CharTokenizer.train(train_texts, word_boundary=True)
    return root, tokenizer


def config(root, **overrides) -> dict:
    cfg = {
        "manifest_dir": str(root), "corpus": "toy",
        "train_parts": ["train"], "valid_parts": ["dev"], "test_parts": ["test"],
        "max_duration": 6.0, "num_buckets": 2, "num_workers": 0,
        "shuffle": False, "drop_last": False, "seed": 7,
        "filters": {"min_duration": MIN_DUR, "max_duration": MAX_DUR},
        "specaug": {"enabled": False}, "musan": {"parts": []},
    }
    cfg.update(overrides)
    return cfg


def manifest(root, part, corpus="toy"):
    return {c.id: c for c in CutSet.from_file(root / f"{corpus}_cuts_{part}.jsonl.gz")}


def batch_ids(loader) -> list[list[str]]:
    return [b["cut_ids"] for b in loader]


def flat(batches) -> list[str]:
    return [i for b in batches for i in b]


def test_filters_drop_exactly_the_expected_cuts(data, caplog):
    root, tok = data
    dm = DataModule(config(root), tok)
    with caplog.at_level(logging.INFO, logger="asr_recipes.data.filters"):
        train = flat(batch_ids(dm.train_dataloader(epoch=0)))
        valid = flat(batch_ids(dm.valid_dataloader()))
        test = flat(batch_ids(dm.test_dataloaders()["test"]))
    for ids, part, mode in ((train, "train", "train"), (valid, "dev", "valid"), (test, "test", "test")):
        cuts = manifest(root, part).values()
        assert len(ids) == len(set(ids))
        assert set(ids) == expected_kept(cuts, tok, mode), mode
    assert set(train) == {f"tr{i:02d}" for i in range(20)} | {"unknown"}
    assert set(valid) == {"d0", "d1", "dshort", "dlong"}
    assert set(test) == {"t0", "tempty", "tdense"}
    messages = [r.getMessage() for r in caplog.records]
    assert "train: kept 21 of 25 cuts; dropped: empty_text=1, too_short=1, too_long=1, too_few_frames=1" in messages
    assert any("train: 1 kept cuts have transcripts with <unk>" in m and "unknown" in m for m in messages)
    assert "test: kept 3 of 4 cuts; dropped: empty_text=0, too_short=0, too_long=0, too_few_frames=1" in messages


def test_scan_report_counts_reasons(data):
    root, tok = data
    report = scan_cuts(manifest(root, "train").values(), tok, FilterConfig(MIN_DUR, MAX_DUR), "train")
    assert dict(report.dropped) == {"empty_text": 1, "too_short": 1, "too_long": 1, "too_few_frames": 1}
    assert report.dropped_ids == {"empty", "short", "long", "dense"}
    assert report.num_with_unk == 1 and report.kept == 21


def test_batch_layout(data):
    root, tok = data
    cuts = manifest(root, "dev")
    seen = []
    for batch in DataModule(config(root), tok).valid_dataloader():
        n = len(batch["cut_ids"])
        feats, lens, tokens, tlens = batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"]
        assert feats.dtype == torch.float32 and feats.shape[0] == n and feats.shape[2] == 80
        assert lens.dtype == tokens.dtype == tlens.dtype == torch.int64
        assert lens.shape == tlens.shape == (n,) and tokens.shape == (n, int(tlens.max()))
        assert feats.shape[1] == int(lens.max())
        assert lens.tolist() == sorted(lens.tolist(), reverse=True)
        for i, cut_id in enumerate(batch["cut_ids"]):
            cut = cuts[cut_id]
            assert batch["texts"][i] == cut.supervisions[0].text
            assert lens[i] == cut.num_frames
            torch.testing.assert_close(feats[i, : lens[i]], torch.from_numpy(cut.load_features()))
            ref = tok.encode([cut.supervisions[0].text])[0]
            assert tlens[i] == len(ref) and tokens[i, : len(ref)].tolist() == ref
            assert not tokens[i, len(ref):].any()  # padded with 0
        seen += batch["cut_ids"]
    assert sorted(seen) == ["d0", "d1", "dlong", "dshort"]


def test_specaugment_changes_training_features_only(data):
    root, tok = data
    cuts = manifest(root, "train")
    torch.manual_seed(0)
    changed = 0
    dm = DataModule(config(root, specaug={"enabled": True}), tok)
    for batch in dm.train_dataloader(epoch=0):
        for i, cut_id in enumerate(batch["cut_ids"]):
            assert batch["feature_lens"][i] == cuts[cut_id].num_frames
            clean = torch.from_numpy(cuts[cut_id].load_features())
            changed += not torch.equal(batch["features"][i, : len(clean)], clean)
    assert changed >= 10  # p=0.9 per cut; 21 cuts


def test_musan_noise_mixing_keeps_ids_and_lengths(data):
    root, tok = data
    cuts = manifest(root, "train")
    dm = DataModule(config(root, musan={"parts": ["noise"], "prob": 1.0, "snr": [5, 5]}), tok)
    ids = []
    for batch in dm.train_dataloader(epoch=0):
        for i, cut_id in enumerate(batch["cut_ids"]):
            clean = torch.from_numpy(cuts[cut_id].load_features())
            assert batch["feature_lens"][i] == len(clean)
            assert not torch.allclose(batch["features"][i, : len(clean)], clean, atol=0.1)
        ids += batch["cut_ids"]
    assert set(ids) == expected_kept(cuts.values(), tok, "train")


def test_ranks_get_disjoint_cuts_covering_the_data(data):
    root, tok = data
    dm = DataModule(config(root, shuffle=True, max_duration=4.0), tok)
    per_rank = [batch_ids(dm.train_dataloader(epoch=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1])  # equal steps: no DDP rank waits forever
    ids = [set(flat(b)) for b in per_rank]
    # drop_last=False may hand a rank a duplicate (marked "_dup") of a cut to even out the end.
    real = [{i for i in s if "_dup" not in i} for s in ids]
    assert not real[0] & real[1]
    assert real[0] | real[1] == expected_kept(manifest(root, "train").values(), tok, "train")
    other_epoch = flat(batch_ids(dm.train_dataloader(epoch=4, rank=0, world_size=2)))
    assert other_epoch != flat(per_rank[0])  # reshuffled per epoch


def test_resume_mid_epoch_despite_worker_prefetch(data):
    root, tok = data
    cfg = config(root, shuffle=True, max_duration=3.0, num_workers=1)
    reference = batch_ids(DataModule(dict(cfg, num_workers=0), tok).train_dataloader(epoch=2))
    assert len(reference) >= 6

    loader = DataModule(cfg, tok).train_dataloader(epoch=2)
    it = iter(loader)
    consumed = [next(it)["cut_ids"] for _ in range(2)]
    next(it)  # the worker has prefetched further by now
    state = pickle.loads(pickle.dumps(DataModule.sampler_state(loader, batches_consumed=2)))
    del it
    assert consumed == reference[:2]

    resumed = batch_ids(DataModule(cfg, tok).train_dataloader(epoch=2, sampler_state=state))
    assert resumed == reference[2:]
    with pytest.raises(ValueError, match="epoch 2"):
        DataModule(cfg, tok).train_dataloader(epoch=3, sampler_state=state)


def test_default_config_files_are_valid(tmp_path):
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf/data/default.yaml"), resolve=True)
    parsed = DataConfig.from_dict(cfg)
    assert parsed.corpus == "librispeech" and parsed.test_parts == ("test-clean", "test-other")
    assert parsed.specaug.features_mask_size == 27 and parsed.specaug.num_feature_masks == 2
    assert parsed.musan.parts == () and parsed.filters == FilterConfig(1.0, 20.0)

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        composed = compose(config_name="fbank", overrides=["+data=aishell"])
    aishell = DataConfig.from_dict(OmegaConf.to_container(composed.data, resolve=True))
    assert aishell.corpus == "aishell" and aishell.test_parts == ("test",)
    assert aishell.valid_parts == ("dev",) and aishell.max_duration == parsed.max_duration


def test_config_errors_name_the_key_or_file(data, tmp_path):
    root, tok = data
    with pytest.raises(ValueError, match=r"\['max_durations'\] in data config"):
        DataModule(config(root, max_durations=3), tok)
    with pytest.raises(ValueError, match=r"\['num_masks'\] in data.specaug config"):
        DataModule(config(root, specaug={"num_masks": 3}), tok)
    with pytest.raises(FileNotFoundError, match="run the fbank stage") as e:
        DataModule(config(tmp_path), tok).valid_dataloader()
    assert str(tmp_path / "toy_cuts_dev.jsonl.gz") in str(e.value)


def test_noise_is_mixed_at_the_drawn_snr_measured_from_the_samples(data):
    from asr_recipes.data.augment import NoiseMix, seeded

    root, _ = data
    cuts = CutSet.from_cuts(manifest(root, "train")[f"tr{i:02d}"] for i in range(6))
    mixer = NoiseMix(CutSet.from_file(root / "musan_cuts_noise.jsonl.gz"), snr=(4.0, 12.0), prob=1.0)
    with seeded(3):
        mixed = mixer(cuts)
    with seeded(3):
        again = mixer(cuts)
    for a, b in zip(mixed, again):  # a function of the seed (lhotse names the noise pieces with uuid4s)
        np.testing.assert_array_equal(a.load_features(), b.load_features())
    snrs = []
    for clean, noisy in zip(cuts, mixed):
        assert noisy.id == clean.id and noisy.duration == pytest.approx(clean.duration)
        speech = clean.load_audio()[0].astype(np.float64)
        noise = noisy.load_audio()[0].astype(np.float64) - speech  # what the mixing added
        snrs.append(10 * np.log10(np.sum(speech ** 2) / np.sum(noise ** 2)))
        # ... is the SNR drawn for this cut (lhotse levels the noise piece by its own energy
        # estimate, which is a few tenths of a dB off on these short tone-like cuts).
        assert snrs[-1] == pytest.approx(noisy.tracks[1].snr, abs=0.5)
    assert all(3.5 <= s <= 12.5 for s in snrs) and max(snrs) - min(snrs) > 1.0  # drawn, not fixed


def test_augmented_batches_do_not_depend_on_workers_or_resuming(data):
    root, tok = data
    cfg = config(root, shuffle=True, max_duration=3.0, specaug={"enabled": True},
                 musan={"parts": ["noise"], "prob": 0.5, "snr": [5, 15]})

    def batches(loader):
        return [(b["cut_ids"], b["features"]) for b in loader]

    reference = batches(DataModule(cfg, tok).train_dataloader(epoch=1))
    assert len(reference) >= 6
    with_worker = batches(DataModule(dict(cfg, num_workers=1), tok).train_dataloader(epoch=1))
    assert [ids for ids, _ in with_worker] == [ids for ids, _ in reference]
    for (_, a), (_, b) in zip(with_worker, reference):
        assert torch.equal(a, b)
    clean = {c.id: torch.from_numpy(c.load_features()) for c in manifest(root, "train").values()}
    assert sum(not torch.equal(f[i, : len(clean[c])], clean[c]) for ids, f in reference for i, c in enumerate(ids)) > 5

    # Resumed after 3 batches with a worker: the remaining batches, augmented identically.
    loader = DataModule(dict(cfg, num_workers=1), tok).train_dataloader(epoch=1)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = DataModule.sampler_state(loader, batches_consumed=3)
    del it
    resumed = batches(DataModule(dict(cfg, num_workers=1), tok).train_dataloader(epoch=1, sampler_state=state))
    assert [ids for ids, _ in resumed] == [ids for ids, _ in reference[3:]]
    for (_, a), (_, b) in zip(resumed, reference[3:]):
        assert torch.equal(a, b)
    # Another epoch augments the same cut differently.
    other = {c: f[i] for ids, f in batches(DataModule(cfg, tok).train_dataloader(epoch=2)) for i, c in enumerate(ids)}
    first = {c: f[i] for ids, f in reference for i, c in enumerate(ids)}
    assert any(not torch.equal(first[c][: len(clean[c])], other[c][: len(clean[c])]) for c in first)

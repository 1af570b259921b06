"""bench_step on the tiny corpus: the entry point prints one row per phase for the batches
training would get; the phase times account for the wall-clock time of the steps, the
timed losses are the transducer losses (against torchaudio's rnnt_loss), with CR-CTC the
timed step runs both views through the encoder and the CTC loss of both (against torch's
ctc_loss), and the CPU peak memory is the process's high-water mark (against the kernel's
/proc/self/status and a tensor of known size allocated inside a step)."""

import re
import sys
import time
from pathlib import Path

import pytest
import torch
import torchaudio
from torch.nn import functional as F

from asr_recipes.data.datamodule import DataModule
from asr_recipes.data.tokenizer import load_tokenizer
from asr_recipes.models.build import build_transducer
from asr_recipes.tools.bench.step import ENCODER_ALONE, PHASES, encoder_input, step_losses, time_steps
from asr_recipes.training.objective import LossConfig, TransducerObjective
from asr_recipes.training.trainer import OptimConfig, make_optimizer
from tests.conftest import tiny_data_config
from tests.decoding.entry import run_entry
from tests.decoding.trained_exp import MODEL


def test_table_rows_add_up(tiny_corpus, capsys):
    run_entry("asr_recipes.bin.bench_step", "model=tiny", f"tokenizer_dir={tiny_corpus.lang}",
              f"data.manifest_dir={tiny_corpus.fbank}", "data.corpus=librispeech", "data.num_workers=0",
              "data.max_duration=12", "data.musan.parts=[]", "warmup=1", "batches=3", "threads=1", "clock=cpu")
    out = capsys.readouterr().out
    ms = {name: float(v) for name, v in re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| [\d.]+% \|$", out, re.MULTILINE)}
    assert set(PHASES) <= set(ms), out
    assert all(ms[p] >= 0 for p in PHASES) and ms["encoder forward"] > 0 and ms["backward"] > 0
    assert ms["step (sum of the medians)"] == pytest.approx(sum(ms[p] for p in PHASES), abs=0.2)
    seconds = float(re.search(r"3 timed steps, median ([\d.]+) s of audio per batch", out)[1])
    assert 0 < seconds <= 12.0  # data.max_duration: the batches the training config makes
    if sys.platform == "linux":  # printed in MiB: at most the kernel's high-water mark now
        printed = float(re.search(r"^peak memory: (\d+) MiB, process peak RSS", out, re.MULTILINE)[1])
        assert 0 < printed <= proc_status_kib("VmHWM") / 1024 + 4  # rounding + the counters' slack (below)


def setup(corpus, model_overrides=None, **data):
    tokenizer = load_tokenizer(corpus.lang)
    torch.manual_seed(0)
    model = build_transducer({**MODEL, **(model_overrides or {})}, vocab_size=tokenizer.vocab_size)
    return model, DataModule(tiny_data_config(corpus, **data), tokenizer, model.encoder.output_lengths)


@pytest.mark.parametrize("clock", [time.perf_counter, time.process_time], ids=["wall", "cpu"])
def test_phase_times_account_for_the_steps_time(tiny_corpus, clock):
    model, data = setup(tiny_corpus, musan={"parts": []})
    loader = data.train_dataloader(0, 0, 1)
    optimizer = make_optimizer(model.train(), OptimConfig(lr=1e-3))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CPU clock counts one thread's work (no OpenMP spinning)
    try:
        started = clock()
        times, audio, _ = time_steps(model, optimizer, loader, LossConfig(), warmup=0, batches=3, grad_clip=5.0,
                                  clock=clock)
        spent = clock() - started
    finally:
        torch.set_num_threads(threads)
    assert [len(times[p]) for p in (*PHASES, ENCODER_ALONE)] == [3] * 6 and len(audio) == 3
    measured = sum(sum(v) for v in times.values())
    # the loop does nothing but the timed phases, apart from bookkeeping
    assert 0.9 * spent <= measured <= spent, (measured, spent)


def test_timed_losses_are_the_transducer_losses(tiny_corpus):
    """With a band wider than every transcript, the pruned loss is the full loss; with no LM/AM-only
    smoothing, the simple loss is the full loss of the additive joiner: both against torchaudio."""
    model, data = setup(tiny_corpus)
    model.eval()  # no dropout draws
    batch = next(iter(data.test_dataloaders()["test-clean"]))
    U = int(batch["token_lens"].max())
    loss = LossConfig(prune_range=U + 1, lm_scale=0.0, am_scale=0.0)
    with torch.no_grad():
        _, parts = step_losses(TransducerObjective(model, loss).eval(), batch)
        simple, pruned = parts["simple"].sum(), parts["pruned"].sum()
        enc, enc_lens = model.encode(batch["features"], batch["feature_lens"])  # (N, T', D)
        y = batch["tokens"][:, :U].masked_fill(torch.arange(U)[None] >= batch["token_lens"][:, None], 0)  # (N, U)
        dec = model.decoder(torch.nn.functional.pad(y, (1, 0)))  # (N, U+1, Dd): blank-prefixed
        enc = enc[:, : int(enc_lens.max())]
        full_logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (N, T', U+1, V)
        additive = model.simple_am_proj(enc).unsqueeze(2) + model.simple_lm_proj(dec).unsqueeze(1)  # (N, T', U+1, V)
        args = (y.int(), enc_lens.int(), batch["token_lens"].int())
        full = torchaudio.functional.rnnt_loss(full_logits, *args, blank=0, reduction="sum")
        simple_ref = torchaudio.functional.rnnt_loss(additive, *args, blank=0, reduction="sum")
    assert pruned.item() == pytest.approx(full.item(), rel=1e-5)
    assert simple.item() == pytest.approx(simple_ref.item(), rel=1e-5)


def test_cr_ctc_step_times_both_views_and_the_ctc_loss(tiny_corpus):
    """With loss.cr_scale > 0 the timed step is the training objective's: the two SpecAugment
    views go through the encoder as one batch of 2N, and the CTC part is the mean over the views
    of torch's ctc_loss on the head's posteriors."""
    model, data = setup(tiny_corpus, {"dropout": 0.0, "ctc_head": True}, musan={"parts": []})  # no random draws
    loss = LossConfig(ctc_scale=0.1, cr_scale=0.02, warm_step=4)
    batch = next(iter(data.train_dataloader(0, 0, 1, time_mask_ratio=loss.time_mask_ratio)))
    N = batch["features"].size(0)
    assert not torch.equal(batch["features"], batch["second_view"])  # independently masked views
    rows = []
    hook = model.encoder.register_forward_hook(lambda module, args, out: rows.append(out[0].size(0)))
    marks = []
    with torch.no_grad():
        _, parts = step_losses(TransducerObjective(model, loss).train(), batch, marks)
    hook.remove()
    assert rows == [2 * N] and len(marks) == 2 and marks[0] <= marks[1]
    assert set(parts) == {"simple", "pruned", "ctc", "cr"}
    with torch.no_grad():  # train mode as in the step: batch statistics of the same 2N batch
        enc, enc_lens = model.encode(*encoder_input(batch, loss))  # (2N, T', D)
        log_probs = model.ctc_log_probs(enc)  # (2N, T', V)
        ref = F.ctc_loss(log_probs.transpose(0, 1), batch["tokens"].repeat(2, 1), enc_lens,
                         batch["token_lens"].repeat(2), blank=0, reduction="none")  # (2N,)
    assert torch.allclose(parts["ctc"], ref.view(2, N).mean(dim=0), rtol=1e-5)


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: its peak), in KiB."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    value, unit = line.split()[1:]
    assert unit == "kB", line  # the kernel writes KiB as "kB"
    return int(value)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_cpu_peak_memory_is_the_process_high_water_mark(tiny_corpus):
    """A 512 MiB tensor filled inside the first timed step: the reported peak is at least the
    resident size the kernel reported right after filling it, and at most the kernel's
    high-water mark read after the steps (both from /proc/self/status, not getrusage).
    Slack: getrusage may read the kernel's per-CPU page counters without folding in the
    pending per-CPU deltas, which /proc sums (56 KiB apart seen on Linux 6.18); a few MiB
    covers that and is 100x below a unit slip or a reading from before the tensor."""
    model, data = setup(tiny_corpus, musan={"parts": []})
    loader = data.train_dataloader(0, 0, 1)
    optimizer = make_optimizer(model.train(), OptimConfig(lr=1e-3))
    held, resident = [], []

    def allocate(*_):
        if not held:
            before = proc_status_kib("VmRSS")
            held.append(torch.ones(2**27))  # 2**27 float32 = 512 MiB, every page written
            resident.append(proc_status_kib("VmRSS"))
            assert resident[0] - before >= 0.95 * 512 * 1024  # the kernel saw the tensor

    hook = model.encoder.register_forward_hook(allocate)
    try:
        _, _, peak = time_steps(model, optimizer, loader, LossConfig(), warmup=0, batches=1, grad_clip=5.0)
        high_water = proc_status_kib("VmHWM")
    finally:
        hook.remove()
        held.clear()
    assert peak.what.startswith("process peak RSS")
    slack = 4 * 2**20
    assert resident[0] * 1024 - slack <= peak.bytes <= high_water * 1024 + slack, (resident[0], peak.bytes, high_water)

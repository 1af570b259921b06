"""Benchmark: one transducer training-loss step, torchaudio's full loss vs our pruned loss.

    python -m asr_recipes.bin.bench_loss                 # shapes for the current device
    python -m asr_recipes.bin.bench_loss device=cuda iters=20     (the entry point of this module)

A step is: joiner forward + loss forward + backward to the encoder output, the decoder output
and the joiner weights. Both methods get the same random inputs at joiner dim J (the joiner's
input projections are outside the step, as in icefall's project_input=False path):

* full:   logits = out(tanh(enc[:, :, None] + dec[:, None]))  (B, T, S+1, C) ->
          torchaudio.functional.rnnt_loss (reduction sum).
* pruned: simple loss on simple_am_proj(enc), simple_lm_proj(dec) (smoothed, lm_only_scale 0.25,
          return_grad) -> prune ranges (s_range 5) -> do_rnnt_pruning -> out(tanh(.)) on
          (B, T, 5, C) -> rnnt_loss_pruned; total 0.5 * simple + pruned.

On CUDA it first checks correctness (our full loss vs torchaudio; pruned with s_range >= S+1 vs
full; Triton recursion vs the PyTorch one), then times fp32 and fp16-autocast joiners, fixed and
variable lengths, and the recursion alone. Prints one table; ratios compare runs of this process.
"""

import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torchaudio.functional as taF

import asr_recipes.rnnt as k2
from asr_recipes.rnnt.mutual_information import recursion_torch


@dataclass(frozen=True)
class Shape:
    B: int
    T: int
    S: int
    C: int
    J: int = 512
    variable: bool = False  # lengths uniform in [half, full] instead of all full

    def __str__(self) -> str:
        return f"B={self.B},T={self.T},S={self.S},C={self.C}" + (",var" if self.variable else "")


class Problem:
    """Random encoder/decoder outputs (at joiner dim), labels, lengths and joiner weights."""

    def __init__(self, shape: Shape, device: torch.device, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        B, T, S, C, J = shape.B, shape.T, shape.S, shape.C, shape.J
        self.shape = shape
        self.enc = torch.rand(B, T, J, generator=gen).to(device).requires_grad_()
        self.dec = torch.rand(B, S + 1, J, generator=gen).to(device).requires_grad_()
        self.symbols = torch.randint(1, C, (B, S), generator=gen).to(device)
        if shape.variable:
            t_len = torch.randint(T // 2, T + 1, (B,), generator=gen)
            s_len = torch.randint(S // 2, S + 1, (B,), generator=gen)
            t_len[0], s_len[0] = T, S
        else:
            t_len, s_len = torch.full((B,), T), torch.full((B,), S)
        self.t_len, self.s_len = t_len.to(device), s_len.to(device)
        zeros = torch.zeros_like(self.t_len)
        self.boundary = torch.stack([zeros, zeros, self.s_len, self.t_len], dim=1)
        torch.manual_seed(seed)
        self.output_linear = torch.nn.Linear(J, C).to(device)
        self.simple_am_proj = torch.nn.Linear(J, C).to(device)
        self.simple_lm_proj = torch.nn.Linear(J, C).to(device)

    def zero_grad(self) -> None:
        for t in [self.enc, self.dec, *self.output_linear.parameters(), *self.simple_am_proj.parameters(),
                  *self.simple_lm_proj.parameters()]:
            t.grad = None


def full_step(p: Problem, amp: bool) -> torch.Tensor:
    device_type = p.enc.device.type
    with torch.autocast(device_type, dtype=torch.float16, enabled=amp):
        logits = p.output_linear(torch.tanh(p.enc[:, :, None] + p.dec[:, None]))  # (B, T, S+1, C)
    loss = taF.rnnt_loss(logits, p.symbols.int(), p.t_len.int(), p.s_len.int(), blank=0, reduction="sum")
    loss.backward()
    return loss


def pruned_step(p: Problem, amp: bool, s_range: int = 5) -> torch.Tensor:
    device_type = p.enc.device.type
    with torch.autocast(device_type, enabled=False):
        simple_loss, (px_grad, py_grad) = k2.rnnt_loss_smoothed(
            lm=p.simple_lm_proj(p.dec).float(), am=p.simple_am_proj(p.enc).float(), symbols=p.symbols,
            termination_symbol=0, lm_only_scale=0.25, am_only_scale=0.0, boundary=p.boundary,
            reduction="sum", return_grad=True,
        )
        ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, p.boundary, s_range)
    with torch.autocast(device_type, dtype=torch.float16, enabled=amp):
        am_pruned, lm_pruned = k2.do_rnnt_pruning(p.enc, p.dec, ranges)
        logits = p.output_linear(torch.tanh(am_pruned + lm_pruned))  # (B, T, s_range, C)
    with torch.autocast(device_type, enabled=False):
        pruned_loss = k2.rnnt_loss_pruned(logits.float(), p.symbols, ranges, 0, p.boundary, reduction="sum")
    loss = 0.5 * simple_loss + pruned_loss
    loss.backward()
    return loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> Tuple[float, Optional[float]]:
    """Median wall time (ms) of fn() and, on CUDA, its peak allocated memory (MB)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    return statistics.median(times), peak


def check_correctness(device: torch.device) -> List[str]:
    """Our losses against torchaudio and against each other on this device; raises on mismatch."""
    lines = []
    p = Problem(Shape(B=4, T=60, S=20, C=50, J=64, variable=True), device, seed=1)
    logits = p.output_linear(torch.tanh(p.enc[:, :, None] + p.dec[:, None])).detach()
    ref = taF.rnnt_loss(logits, p.symbols.int(), p.t_len.int(), p.s_len.int(), blank=0, reduction="none")
    ours = k2.rnnt_loss(logits, p.symbols, 0, p.boundary, reduction="none")
    err = ((ours - ref).abs() / ref.abs()).max().item()
    assert err < 1e-4, f"full loss differs from torchaudio: rel err {err}"
    lines.append(f"check: rnnt_loss vs torchaudio, max rel err {err:.2e}")
    _, (px_grad, py_grad) = k2.rnnt_loss_smoothed(p.simple_lm_proj(p.dec).detach(), p.simple_am_proj(p.enc).detach(),
                                                  p.symbols, 0, 0.25, 0.0, p.boundary, return_grad=True)
    ranges = k2.get_rnnt_prune_ranges(px_grad, py_grad, p.boundary, p.shape.S + 1)
    am_p, lm_p = k2.do_rnnt_pruning(p.enc.detach(), p.dec.detach(), ranges)
    pruned = k2.rnnt_loss_pruned(p.output_linear(torch.tanh(am_p + lm_p)).detach(), p.symbols, ranges, 0,
                                 p.boundary, reduction="none")
    err = ((pruned - ref).abs() / ref.abs()).max().item()
    assert err < 1e-4, f"pruned loss with s_range = S+1 differs from torchaudio: rel err {err}"
    lines.append(f"check: rnnt_loss_pruned(s_range=S+1) vs torchaudio, max rel err {err:.2e}")
    if device.type == "cuda":
        px = torch.randn(8, 40, 121, device=device)
        py = torch.randn(8, 41, 120, device=device)
        px[:, :, 120] = float("-inf")
        # Reference in float64: float32 PyTorch itself is only ~1e-5 away from exact here.
        s_ref, gx_ref, gy_ref = recursion_torch(px.double(), py.double(), None, True)
        s, (gx, gy) = k2.mutual_information_recursion(px, py, return_grad=True)
        score_err = ((s.double() - s_ref).abs() / s_ref.abs()).max().item()
        occ_err = max((gx.double() - gx_ref).abs().max().item(), (gy.double() - gy_ref).abs().max().item())
        assert score_err < 1e-5 and occ_err < 1e-4, f"CUDA recursion: score rel err {score_err}, occupation err {occ_err}"
        lines.append(f"check: CUDA recursion vs float64 PyTorch recursion, score rel err {score_err:.2e}, "
                     f"occupation abs err {occ_err:.2e}")
    return lines


def _fmt_mem(mb: Optional[float]) -> str:
    return "-" if mb is None else f"{mb:,.0f}"


def bench_shapes(shapes: List[Shape], device: torch.device, amp_modes: List[bool], warmup: int, iters: int,
                 skip_full: bool) -> List[str]:
    rows = ["| shape | precision | torchaudio full ms | ours pruned ms | speed-up | full MB | pruned MB | memory ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for shape in shapes:
        for amp in amp_modes:
            p = Problem(shape, device)
            precision = "fp16 autocast" if amp else "fp32"

            def run_full():
                p.zero_grad()
                full_step(p, amp)

            def run_pruned():
                p.zero_grad()
                pruned_step(p, amp)

            t_pruned, m_pruned = time_it(run_pruned, device, warmup, iters)
            if skip_full:
                t_full = m_full = None
            else:
                t_full, m_full = time_it(run_full, device, warmup, iters)
            speed = f"{t_full / t_pruned:.1f}x" if t_full else "-"
            mem = f"{m_full / m_pruned:.1f}x" if m_full and m_pruned else "-"
            full_ms = f"{t_full:,.1f}" if t_full else "-"
            rows.append(f"| {shape} | {precision} | {full_ms} | {t_pruned:,.1f} | {speed} | {_fmt_mem(m_full)} | "
                        f"{_fmt_mem(m_pruned)} | {mem} |")
            print(rows[-1], flush=True)
            del p
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def bench_recursion(device: torch.device, B: int, T: int, S: int, warmup: int, iters: int) -> List[str]:
    """Recursion alone (fwd + occupations + bwd); on CUDA for several warps per sweep program."""
    px = torch.randn(B, S, T + 1, device=device)
    px[:, :, T] = float("-inf")
    py = torch.randn(B, S + 1, T, device=device)
    px.requires_grad_()
    py.requires_grad_()

    def run():
        scores, _ = k2.mutual_information_recursion(px, py, return_grad=True)
        scores.sum().backward()

    lines = []
    if device.type == "cuda":
        from asr_recipes.rnnt import triton_recursion

        for warps in (None, 1, 2, 4):
            triton_recursion.SWEEP_NUM_WARPS = warps
            ms, _ = time_it(run, device, warmup, iters)
            lines.append(f"recursion alone (regular, fwd + occupations + bwd), B={B},T={T},S={S}, "
                         f"warps {warps or 'default'}: {ms:.3f} ms")
        triton_recursion.SWEEP_NUM_WARPS = None
    else:
        ms, _ = time_it(run, device, warmup, iters)
        lines.append(f"recursion alone (regular, fwd + occupations + bwd), B={B},T={T},S={S}: {ms:.3f} ms")
    return lines

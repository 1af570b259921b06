"""The Triton kernels compile for Hopper (sm_90: H100/H200) with triton's bundled ptxas, no GPU needed.

The interpreter (used by the other test_triton_* files on CPU) runs kernels as Python and so
cannot catch what only the compiler rejects (loop-carried types, layouts, unsupported ops).
Compiling needs a process where TRITON_INTERPRET is unset, hence a subprocess.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from asr_recipes.rnnt import triton_logprobs as lp
    from asr_recipes.rnnt import triton_recursion as rec

    assert not rec.INTERPRETED and not lp.INTERPRETED
    target = GPUTarget("cuda", 90, 32)

    def build(fn, types, constexprs, num_warps):
        signature = {name: types.get(name, "constexpr") for name in fn.arg_names}
        kernel = triton.compile(ASTSource(fn, signature, constexprs), target=target, options={"num_warps": num_warps})
        assert "sass" in kernel.asm or kernel.asm.get("cubin"), fn.__name__
        print(fn.__name__, constexprs, "ok")

    ints = dict.fromkeys(["B", "S", "T", "T1", "D", "N", "C", "blank"], "i32")
    sweeps = [("fp32", True, True, 128, None), ("fp32", False, True, 128, None), ("fp32", True, False, 16, None),
              ("fp64", True, True, 128, None), ("fp32", True, True, 512, None), ("fp32", True, True, 128, 4)]
    for dt, regular, store, block_s, warps in sweeps:
        ptrs = {n: "*" + dt for n in ["px_ptr", "py_ptr", "scores_ptr", "scratch_ptr", "px_grad_ptr", "py_grad_ptr"]}
        types = {**ints, **ptrs, "boundary_ptr": "*i64"}
        build(rec._sweep_kernel, types, dict(REGULAR=regular, STORE=store, BLOCK_S=block_s),
              warps or rec._recursion_num_warps(block_s))
        if store:
            build(rec._occupation_kernel, types,
                  dict(REGULAR=regular, BLOCK_S=block_s, TILE_S=rec.OCC_BLOCK_S, TILE_T=rec.OCC_BLOCK_T), 4)
    for logits_dt, dt, C in [("fp32", "fp32", 500), ("fp16", "fp32", 500), ("bf16", "fp32", 5000), ("fp64", "fp64", 37)]:
        block_r, block_c = lp._blocks(C)
        ptrs = {n: "*" + dt for n in ["px_ptr", "py_ptr", "lse_ptr", "g_px_ptr", "g_py_ptr"]}
        types = {**ints, **ptrs, "logits_ptr": "*" + logits_dt, "grad_ptr": "*" + logits_dt, "targets_ptr": "*i64"}
        for fn in (lp._forward_kernel, lp._backward_kernel):
            build(fn, types, dict(BLOCK_R=block_r, BLOCK_C=block_c), 4)
    """
)


def test_kernels_compile_for_hopper(tmp_path):
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, not from a previous run's cache
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" ok") == 19, proc.stdout

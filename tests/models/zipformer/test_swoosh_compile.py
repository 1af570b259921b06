"""The Swoosh Triton kernels compile for Hopper (sm_90: H100/H200) with triton's bundled ptxas,
no GPU needed: what the interpreter (test_swoosh.py on CPU) cannot check. Compiling needs a
process where TRITON_INTERPRET is unset, hence a subprocess (as tests/rnnt/test_triton_compile.py)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from asr_recipes.models.zipformer import triton_swoosh as ts

    assert not ts.INTERPRETED
    target = GPUTarget("cuda", 90, 32)

    def build(fn, types, constexprs):
        signature = {name: types.get(name, "constexpr") for name in fn.arg_names}
        kernel = triton.compile(ASTSource(fn, signature, constexprs), target=target, options={"num_warps": 4})
        assert "sass" in kernel.asm or kernel.asm.get("cubin"), fn.__name__
        print(fn.__name__, constexprs, "ok")

    floats = dict.fromkeys(["offset", "constant", "slope", "d_min", "d_levels_per_unit", "d_step"], "fp32")
    for dt in ("fp32", "fp16", "bf16", "fp64"):
        for mode in (ts.MODE_VALUE, ts.MODE_VALUE_QUANTIZED_DERIV, ts.MODE_VALUE_DERIV):
            d = "*u8" if mode == ts.MODE_VALUE_QUANTIZED_DERIV else "*" + dt
            types = {**floats, "x_ptr": "*" + dt, "y_ptr": "*" + dt, "d_ptr": d, "n": "i32", "seed": "i32"}
            build(ts._swoosh_kernel, types, dict(MODE=mode, F64=dt == "fp64", BLOCK=ts.BLOCK))
        types = {**floats, "g_ptr": "*" + dt, "q_ptr": "*u8", "out_ptr": "*" + dt, "n": "i32"}
        build(ts._dequantize_mul_kernel, types, dict(BLOCK=ts.BLOCK))
    """
)


def test_swoosh_kernels_compile_for_hopper(tmp_path):
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, not from a previous run's cache
    root = Path(__file__).parents[3]
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" ok") == 16, proc.stdout

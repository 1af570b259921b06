"""Where the Triton kernel tests run: compiled on a CUDA GPU if there is one, else interpreted on CPU.

Import this module before anything imports triton. Triton builds every @triton.jit function,
its own library ones (tl.max, tl.sum, ...) included, as compiled or interpreted when it is
decorated, so TRITON_INTERPRET=1 must be in the environment before the first ``import triton``.
Test modules import this at collection time, before any test runs; the variable then stays set
for the session. That only matters to code that runs Triton: on a CPU-only machine that is just
these kernels, and the library sends CPU tensors to them only when a test asks for it
(fused_logprobs.INTERPRET_ON_CPU; recursion_triton is called directly).
"""

import importlib
import os
import sys
from types import ModuleType

import pytest
import torch

ON_CUDA = torch.cuda.is_available()
if not ON_CUDA and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"
DEVICE = torch.device("cuda" if ON_CUDA else "cpu")


def kernel_module(name: str) -> ModuleType:
    """asr_recipes.rnnt.<name> (or the module with dotted path ``name``), checked to be runnable on DEVICE."""
    pytest.importorskip("triton")
    module = importlib.import_module(name if "." in name else f"asr_recipes.rnnt.{name}")
    if not ON_CUDA and not module.INTERPRETED:
        pytest.fail(
            "triton was imported before tests/rnnt/triton_device.py could set TRITON_INTERPRET=1; "
            "run these tests with TRITON_INTERPRET=1 in the environment"
        )
    assert module.available()
    return module

"""What both Triton kernel modules need: an optional import of triton, and whether their
kernels run compiled (CUDA) or in Triton's interpreter (TRITON_INTERPRET=1, CPU tensors).

Triton decides compiled vs interpreted for every @triton.jit function, its own library ones
(tl.max, ...) included, when the function is decorated, from TRITON_INTERPRET at that moment.
"""

import torch

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # CPU-only installs: nothing can run; the kernel modules define no kernels
    triton = tl = InterpretedFunction = None


def runs_interpreted(kernel) -> bool:
    """True if ``kernel`` (a @triton.jit function) runs in the interpreter. Raises if triton's
    own library was built the other way (TRITON_INTERPRET changed between imports)."""
    if triton is None:
        return False
    interpreted = isinstance(kernel, InterpretedFunction)
    if interpreted != isinstance(tl.max, InterpretedFunction):
        raise RuntimeError(
            "TRITON_INTERPRET changed between the first import of triton and of the asr_recipes kernels; "
            "set it (or unset it) before anything imports triton"
        )
    return interpreted


def can_run(interpreted: bool) -> bool:
    """Kernels can run here: triton is installed and they are interpreted or a GPU is present."""
    return triton is not None and (interpreted or torch.cuda.is_available())

"""Float tolerances that follow from the numerics of what is compared.

Two float32 computations of the same quantity that sum in a different order (another CPU
vendor's kernels, another batch shape, chunked instead of whole) differ by rounding: each
of N summed terms carries a relative error of about one unit in the last place (eps), and
independent errors grow like sqrt(N). A bound of a few eps * sqrt(N) times the magnitude
separates that noise from a real change, which moves results by orders of magnitude more.
"""

import math

import torch

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7: one ulp at 1.0


def float32_sum_tol(magnitude: float, num_terms: int, ulps: float = 8.0) -> float:
    """Absolute tolerance for two float32 sums of ``num_terms`` terms of a result of size
    ``magnitude``, computed in different orders: ``ulps`` * eps * sqrt(num_terms) * magnitude."""
    return ulps * EPS32 * math.sqrt(max(num_terms, 1)) * max(abs(magnitude), 1.0)

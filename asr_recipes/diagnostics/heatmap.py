"""A picture of one utterance's full lattice with the pruned band drawn over it (matplotlib).

matplotlib is an optional dependency (``pip install 'asr-recipes[plot]'``); everything else in
the prune report works without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asr_recipes.atomic_files import write_atomic_with
from asr_recipes.diagnostics.prune_coverage import UtteranceLattice


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("the prune-report picture needs matplotlib: pip install 'asr-recipes[plot]' "
                           "(or pip install matplotlib), or pass plot=false") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_lattice(lattice: UtteranceLattice, s_range: int, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Writes a PNG: node occupation (label position s up, frame t right), the band of ``s_range``
    as two red staircases, and the best path as white dots. Returns the path."""
    plt = _pyplot()
    occupation = lattice.occupation  # (S+1, T)
    S1, T = occupation.shape
    ranges = lattice.ranges[s_range]  # (T, R)
    fig, ax = plt.subplots(figsize=(min(12.0, 3.0 + T / 12), min(6.0, 2.5 + S1 / 12)))
    image = ax.imshow(occupation, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                      interpolation="nearest", extent=(-0.5, T - 0.5, -0.5, S1 - 0.5))
    edges = np.arange(T + 1) - 0.5
    ax.stairs(ranges[:, 0] - 0.5, edges, baseline=None, color="red", linewidth=1.2, label=f"band, s_range={s_range}")
    ax.stairs(np.minimum(ranges[:, -1], S1 - 1) + 0.5, edges, baseline=None, color="red", linewidth=1.2)
    s, t = np.nonzero(lattice.best_path)
    ax.scatter(t, s, s=4, c="white", marker="o", linewidths=0, label="best path")
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-0.5, S1 - 0.5)
    ax.set_xlabel("encoder frame t")
    ax.set_ylabel("labels emitted s")
    ax.set_title(f"{lattice.cut_id}: coverage {100 * lattice.coverage[s_range]:.2f}%, "
                 f"pruned - full loss {lattice.gap[s_range]:.3g} nats", fontsize=9)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.6)
    fig.colorbar(image, ax=ax, label="P(alignment leaves node)")
    fig.tight_layout()
    try:
        return write_atomic_with(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)

"""Hyper-parameters that change with training progress (the Zipformer's schedules).

Many Zipformer settings (dropout, layer/module skip rates, the bypass minimum, balancer
probabilities, whitening limits) are piecewise-linear functions of the training batch
count: strong regularisation at the start, little later. A :class:`ScheduledFloat` is such
a value; a module reads it with ``float(...)`` where it needs the number.

The trainer tells every schedule of a model where training stands, once per step:

    set_batch_count(model, batch_idx)   # before model(...) of that step

A schedule that was never told (batch count None), or whose module is in eval mode, reads
as its ``default``: so an encoder in eval mode, or one trained without set_batch_count,
is deterministic and equal to icefall's in the same state.
"""

from __future__ import annotations

from torch import nn


class ScheduledFloat(nn.Module):
    """A float that follows a piecewise-linear schedule over training batches.

    Args:
        points: (batch_count, value) pairs with strictly increasing batch counts; before the
            first point the value is the first value, after the last point the last value,
            linear in between.
        default: the value in eval mode and before set_batch_count was ever called.

    It is an nn.Module only so that ``model.modules()`` finds it (set_batch_count) and so
    that ``model.eval()`` reaches it; it has no parameters and no forward().
    """

    def __init__(self, *points: tuple[float, float], default: float = 0.0):
        super().__init__()
        if not points:
            raise ValueError("a schedule needs at least one (batch_count, value) point")
        xs = [float(x) for x, _ in points]
        if any(b <= a for a, b in zip(xs, xs[1:])):
            raise ValueError(f"schedule batch counts must increase strictly, got {xs}")
        self.points = tuple((float(x), float(y)) for x, y in points)
        self.default = float(default)
        self.batch_count: float | None = None

    def value_at(self, batch_count: float) -> float:
        """The scheduled value at ``batch_count`` (ignores training mode and default)."""
        (x0, y0), (xn, yn) = self.points[0], self.points[-1]
        if batch_count <= x0:
            return y0
        if batch_count >= xn:
            return yn
        for (xa, ya), (xb, yb) in zip(self.points, self.points[1:]):
            if batch_count <= xb:
                return ya + (yb - ya) * (batch_count - xa) / (xb - xa)
        raise AssertionError("unreachable: batch_count lies inside the schedule")

    def __float__(self) -> float:
        if self.batch_count is None or not self.training:
            return self.default
        return self.value_at(self.batch_count)

    def extra_repr(self) -> str:
        return f"points={list(self.points)}, default={self.default}, batch_count={self.batch_count}"


FloatLike = float | ScheduledFloat


def set_batch_count(model: nn.Module, batch_count: float) -> None:
    """Point every ScheduledFloat inside ``model`` (any nn.Module, a DDP wrapper included)
    at training batch ``batch_count``. Call once per training step, before the forward."""
    for module in model.modules():
        if isinstance(module, ScheduledFloat):
            module.batch_count = float(batch_count)


def whitening_limit(limit: float, ratio: float = 2.0) -> ScheduledFloat:
    """A whitening limit that relaxes from ``limit`` to ``ratio * limit`` over the first
    20k batches (default, in eval: ``limit``)."""
    return ScheduledFloat((0.0, limit), (20000.0, ratio * limit), default=limit)

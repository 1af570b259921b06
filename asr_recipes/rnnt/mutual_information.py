"""The lattice recursion behind every transducer loss here (k2's ``mutual_information_recursion``).

Given arc log-weights of a B x (S+1) x (T+1) lattice (node (s, t): s symbols emitted, t frames
consumed), it computes the total log-weight of all paths from the begin node to the end node::

    regular:            p[s, t] = logaddexp(p[s-1, t]   + px[s-1, t],   p[s, t-1] + py[s, t-1])
    modified/constr.:   p[s, t] = logaddexp(p[s-1, t-1] + px[s-1, t-1], p[s, t-1] + py[s, t-1])

with p[s_begin, t_begin] = 0 and score = p[s_end, t_end]. px (B, S, T+1) (regular) or (B, S, T)
(modified) holds symbol arcs, py (B, S+1, T) blank arcs. The mode is read off px's last dim.

How it is vectorised: every predecessor of a node lies on the previous *wavefront*. For the
regular lattice the wavefronts are the anti-diagonals d = s + t; for the modified lattice they
are the frames d = t. In both cases, indexing nodes as (d, s),

    P[d, s] = logaddexp(P[d-1, s] + Y[d-1, s],  P[d-1, s-1] + X[d-1, s-1]),

so one Python step per wavefront updates all B x (S+1) nodes with three tensor ops
(T+S+1 steps for regular, T+1 for modified). ``X``/``Y`` are px/py re-laid out as
(D, B, S) / (D, B, S+1) ("skewed" for the regular case). The backward (beta) recursion runs the
same way in reverse, and arc occupation probabilities follow in closed form:
``occ(arc) = exp(alpha(src) + w(arc) + beta(dst) - score)``. They are the gradients of the score
w.r.t. px/py, so the autograd Function saves them and its backward is a multiply: autograd
records one node, not one per step, and memory is O(B*S*T).
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .checks import check_boundary, check_lattice

NEG_INF = float("-inf")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in at least float32 (float16/bfloat16 inputs are upcast)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _skew(x: Tensor, D: int) -> Tensor:
    """(B, R, W) -> (D, B, R) with out[d, b, r] = x[b, r, d - r], -inf where d - r is outside [0, W)."""
    B, R, W = x.shape
    padded = x.new_full((B, R, D + R), NEG_INF)
    padded[:, :, R : R + W] = x
    # Row r of the view starts r elements earlier than row r of `padded`, i.e. is shifted right by r.
    skewed = padded.as_strided((B, R, D), (R * (D + R), D + R - 1, 1), R)  # [b, r, d] = x[b, r, d-r]
    return skewed.permute(2, 0, 1).contiguous()  # (D, B, R)


def _unskew(z: Tensor, W: int) -> Tensor:
    """Inverse of _skew: (rows, B, R) -> (B, R, W) with out[b, r, w] = z[w + r, b, r]; needs W + R - 1 <= rows."""
    rows, B, R = z.shape
    zt = z.permute(1, 2, 0).contiguous()  # (B, R, rows)
    return zt.as_strided((B, R, W), (R * rows, rows + 1, 1)).contiguous()


def _by_wavefront(d: Tensor, s: Tensor) -> dict:
    """Groups (batch index, s) pairs by wavefront index d, for injecting begin/end nodes."""
    groups: dict = {}
    for b, (dd, ss) in enumerate(zip(d.tolist(), s.tolist())):
        groups.setdefault(dd, ([], []))
        groups[dd][0].append(b)
        groups[dd][1].append(ss)
    return groups


def recursion_torch(
    px: Tensor, py: Tensor, boundary: Optional[Tensor], need_grad: bool
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Scores (B,) and, if need_grad, occupation probabilities shaped like px and py.

    Inputs must already be in the compute dtype and validated. Pure PyTorch, any device.
    """
    B, S, T1 = px.shape
    T = py.shape[2]
    modified = T1 == T
    device = px.device

    if boundary is None:
        s_begin = torch.zeros(B, dtype=torch.int64, device=device)
        t_begin = s_begin
        s_end = torch.full((B,), S, dtype=torch.int64, device=device)
        t_end = torch.full((B,), T, dtype=torch.int64, device=device)
    else:
        s_begin, t_begin, s_end, t_end = boundary.unbind(1)
    # Wavefront of node (s, t): d = t (modified) or d = s + t (regular).
    d_begin = t_begin if modified else s_begin + t_begin
    d_end = t_end if modified else s_end + t_end

    if modified:
        D = T + 1
        X = torch.cat([px.permute(2, 0, 1), px.new_full((1, B, S), NEG_INF)])  # (D, B, S)
        Y = torch.cat([py.permute(2, 0, 1), py.new_full((1, B, S + 1), NEG_INF)])  # (D, B, S+1)
    else:
        D = S + T + 1
        X = _skew(px, D)  # (D, B, S): X[d, b, s] = px[b, s, d - s]
        Y = _skew(py, D)  # (D, B, S+1)

    begins = _by_wavefront(d_begin, s_begin)
    ends = _by_wavefront(d_end, s_end)
    d_first, d_last = min(begins), max(ends)

    # Forward (alpha) recursion. Node values live in columns 1..S+1 of a (D, B, S+2) buffer whose
    # column 0 stays -inf, so that for every wavefront one strided view pairs each node's two
    # predecessors: [:, 0, s] = alpha[d-1, s-1] (symbol arc), [:, 1, s] = alpha[d-1, s] (blank).
    # Adding the matching arc weights and one logaddexp then updates a whole wavefront: two
    # tensor ops per step. Views are made once up front because per-step Python indexing would
    # cost as much as the arithmetic on these small tensors.
    a_buf = px.new_full((D, B, S + 2), NEG_INF)
    a_pairs = a_buf.as_strided((D, B, 2, S + 1), (B * (S + 2), S + 2, 1, 1)).unbind(0)
    a_nodes = a_buf[:, :, 1:].unbind(0)
    into = px.new_full((D, B, 2, S + 1), NEG_INF)  # arc weights into each node
    into[:, :, 0, 1:] = X
    into[:, :, 1, :] = Y
    into_by_d = into.unbind(0)
    tmp = px.new_empty((B, 2, S + 1))
    tmp_symbol, tmp_blank = tmp.unbind(1)
    for d in range(d_first, d_last + 1):
        if d > d_first:
            torch.add(a_pairs[d - 1], into_by_d[d - 1], out=tmp)
            torch.logaddexp(tmp_symbol, tmp_blank, out=a_nodes[d])
        if d in begins:  # exact: nothing can reach a begin node, so overwrite with log(1)
            bs, ss = begins[d]
            a_buf[d, bs, [s + 1 for s in ss]] = 0.0
    alpha = a_buf[:, :, 1:]  # (D, B, S+1)
    batch = torch.arange(B, device=device)
    scores = alpha[d_end, batch, s_end]  # (B,)
    if not need_grad:
        return scores, None, None

    # Backward (beta) recursion, mirrored: node values in columns 0..S, column S+1 stays -inf;
    # [:, 0, s] = beta[d+1, s] (blank arc), [:, 1, s] = beta[d+1, s+1] (symbol arc).
    b_buf = px.new_full((D, B, S + 2), NEG_INF)
    b_pairs = b_buf.as_strided((D, B, 2, S + 1), (B * (S + 2), S + 2, 1, 1)).unbind(0)
    b_nodes = b_buf[:, :, : S + 1].unbind(0)
    out_of = into  # reuse the buffer: arc weights out of each node
    out_of[:, :, 0, :] = Y
    out_of[:, :, 1, :S] = X
    out_of[:, :, 1, S] = NEG_INF
    out_by_d = out_of.unbind(0)
    tmp_blank, tmp_symbol = tmp.unbind(1)
    for d in range(d_last, d_first - 1, -1):
        if d < d_last:
            torch.add(b_pairs[d + 1], out_by_d[d], out=tmp)
            torch.logaddexp(tmp_blank, tmp_symbol, out=b_nodes[d])
        if d in ends:
            bs, ss = ends[d]
            b_buf[d, bs, ss] = 0.0
    beta = b_buf[:, :, : S + 1]  # (D, B, S+1)

    # Arc occupations. With no surviving path (score -inf) every alpha+w+beta is -inf as well;
    # subtracting 0 instead of -inf keeps those occupations at exactly 0 rather than NaN.
    norm = torch.where(scores > NEG_INF, scores, torch.zeros_like(scores)).view(1, B, 1)
    x_occ = (alpha[:-1, :, :S] + X[:-1] + beta[1:, :, 1:] - norm).exp_()  # (D-1, B, S)
    y_occ = (alpha[:-1] + Y[:-1] + beta[1:] - norm).exp_()  # (D-1, B, S+1)
    if modified:
        px_grad = x_occ.permute(1, 2, 0).contiguous()  # (B, S, T)
        py_grad = y_occ.permute(1, 2, 0).contiguous()  # (B, S+1, T)
    else:
        px_grad = _unskew(x_occ, T1)  # (B, S, T+1)
        py_grad = _unskew(y_occ, T)  # (B, S+1, T)
    return scores, px_grad, py_grad


def _recursion(px: Tensor, py: Tensor, boundary: Optional[Tensor], need_grad: bool):
    """Dispatches to the Triton kernels for CUDA tensors when available, else to PyTorch."""
    if px.is_cuda:
        from . import triton_recursion

        if triton_recursion.available():
            return triton_recursion.recursion_triton(px, py, boundary, need_grad)
    return recursion_torch(px, py, boundary, need_grad)


def _run(px: Tensor, py: Tensor, boundary: Optional[Tensor], need_grad: bool):
    """_recursion in the compute dtype (float32 at least); results cast back to px's dtype."""
    cdtype = _compute_dtype(px.dtype)
    scores, px_grad, py_grad = _recursion(px.to(cdtype).contiguous(), py.to(cdtype).contiguous(), boundary, need_grad)
    if need_grad:
        px_grad, py_grad = px_grad.to(px.dtype), py_grad.to(py.dtype)
    return scores.to(px.dtype), px_grad, py_grad


class _MutualInformationRecursion(torch.autograd.Function):
    """Autograd wrapper: forward computes scores and occupations, backward scales occupations."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Optional[Tensor]):
        scores, px_grad, py_grad = _run(px, py, boundary, need_grad=True)
        ctx.save_for_backward(px_grad, py_grad)
        ctx.mark_non_differentiable(px_grad, py_grad)
        return scores, px_grad, py_grad

    @staticmethod
    def backward(ctx, scores_grad: Tensor, _px_grad_grad, _py_grad_grad):
        px_grad, py_grad = ctx.saved_tensors
        g = scores_grad.reshape(-1, 1, 1)
        return px_grad * g, py_grad * g, None


def mutual_information_recursion(
    px: Tensor,
    py: Tensor,
    boundary: Optional[Tensor] = None,
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """Total log-weight of all lattice paths (the negated transducer loss), k2-compatible.

    Args:
      px: (B, S, T+1) for regular transducers (column T should be -inf) or (B, S, T) for
        modified/constrained ones: log-weight of the symbol arc leaving node (s, t).
      py: (B, S+1, T): log-weight of the blank (next-frame) arc leaving node (s, t).
      boundary: optional int64 (B, 4) rows [s_begin, t_begin, s_end, t_end] (ends exclusive);
        None means [0, 0, S, T] for every row. Indices into px/py are absolute.
      return_grad: also return (px_grad, py_grad), the arc occupation probabilities in [0, 1],
        i.e. d score / d px and d score / d py per sequence, independent of any reduction.

    Returns:
      scores (B,) = p[b, s_end, t_end] in px's dtype (float16/bfloat16 inputs are computed in
      float32), or ``(scores, (px_grad, py_grad))`` when return_grad.
    """
    B, S, T, regular = check_lattice(px, py)
    boundary = check_boundary(boundary, B, S, T, "regular" if regular else "modified")
    return score_checked_lattice(px, py, boundary, return_grad)


def score_checked_lattice(px: Tensor, py: Tensor, boundary: Optional[Tensor], return_grad: bool = False):
    """:func:`mutual_information_recursion` for a lattice and int64 boundary its caller has
    already validated (the losses build both from checked inputs; checking again would cost
    host syncs on every training step)."""
    if px.requires_grad or py.requires_grad or return_grad:
        scores, px_grad, py_grad = _MutualInformationRecursion.apply(px, py, boundary)
        return (scores, (px_grad, py_grad)) if return_grad else scores
    with torch.no_grad():
        return _run(px, py, boundary, need_grad=False)[0]


class _JointMutualInformation(torch.autograd.Function):
    """Per-term contributions of a sum of lattices; d out[n] / d term_n = occupation (held fixed)."""

    @staticmethod
    def forward(ctx, boundary: Optional[Tensor], n: int, *terms: Tensor):
        px_seq, py_seq = terms[:n], terms[n:]
        cdtype = _compute_dtype(px_seq[0].dtype)
        xs = torch.stack(px_seq).to(cdtype)  # (N, B, S, T+1)
        ys = torch.stack(py_seq).to(cdtype)  # (N, B, S+1, T)
        scores, px_grad, py_grad = _recursion(xs.sum(0), ys.sum(0), boundary, need_grad=True)
        B = xs.shape[1]
        # Clamp -inf to the most negative finite value: a zero occupation times -inf would be NaN.
        fmin = torch.finfo(cdtype).min
        x_terms = xs.clamp(min=fmin).reshape(n, B, -1)
        y_terms = ys.clamp(min=fmin).reshape(n, B, -1)
        prods = (x_terms * px_grad.reshape(1, B, -1)).sum(-1) + (y_terms * py_grad.reshape(1, B, -1)).sum(-1)  # (N, B)
        # Expected log-weights sum to less than the log of the summed weights (Jensen); the gap
        # goes to the first term so that the columns add up to the true total score.
        prods[0] += scores - prods.sum(0)
        ctx.save_for_backward(px_grad.to(px_seq[0].dtype), py_grad.to(py_seq[0].dtype))
        ctx.n = n
        return prods.to(px_seq[0].dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        px_grad, py_grad = ctx.saved_tensors
        g = grad.reshape(ctx.n, -1, 1, 1)
        return (None, None, *[px_grad * g[i] for i in range(ctx.n)], *[py_grad * g[i] for i in range(ctx.n)])


def joint_mutual_information_recursion(
    px: Sequence[Tensor], py: Sequence[Tensor], boundary: Optional[Tensor] = None
) -> Tensor:
    """Runs the recursion on sum(px), sum(py) and splits the score into per-term parts.

    Args:
      px, py: equal-length lists of tensors shaped as in :func:`mutual_information_recursion`.
      boundary: as there.
    Returns:
      (N, B): entry [n, b] is the inner product of term n with the arc occupations of the
      summed lattice; column sums equal the total score. Gradients w.r.t. each term equal the
      occupation probabilities, as for the plain recursion.
    """
    if len(px) == 0 or len(px) != len(py):
        raise ValueError(f"px and py must be non-empty lists of equal length, got {len(px)} and {len(py)}")
    for a, b in zip(px, py):
        if a.shape != px[0].shape or b.shape != py[0].shape:
            raise ValueError("all px terms (and all py terms) must have the same shape")
    B, S, T, regular = check_lattice(px[0], py[0])
    boundary = check_boundary(boundary, B, S, T, "regular" if regular else "modified")
    return _JointMutualInformation.apply(boundary, len(px), *px, *py)


__all__: List[str] = ["mutual_information_recursion", "joint_mutual_information_recursion", "recursion_torch"]

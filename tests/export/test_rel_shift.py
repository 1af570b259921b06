"""attention.rel_shift is a strided view in PyTorch and a gather in an exported graph: the
exported gather (run by onnxruntime, at sizes other than the traced ones) must give exactly
the strided view's values, for whole utterances (Tk = Tq) and for streaming (Tk > Tq)."""

import warnings

import numpy as np
import pytest
import torch

from asr_recipes.models.attention import rel_shift

ort = pytest.importorskip("onnxruntime")


class Shift(torch.nn.Module):
    def forward(self, scores):
        return rel_shift(scores)


@pytest.mark.parametrize("left", [0, 5])
def test_exported_gather_equals_strided_view(tmp_path, left):
    path = tmp_path / "shift.onnx"
    Tq = 7
    example = torch.randn(2, 3, Tq, left + 2 * Tq - 1)  # (N, H, Tq, Tk + Tq - 1), Tk = left + Tq
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Shift(), (example,), str(path), dynamo=False, opset_version=13, input_names=["s"],
                          output_names=["o"], dynamic_axes={"s": {0: "N", 1: "H", 2: "Tq", 3: "P"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for Tq in (1, 4, 13):
        scores = torch.randn(3, 2, Tq, left + 2 * Tq - 1)
        (got,) = sess.run(None, {"s": scores.numpy()})
        expected = rel_shift(scores)  # the strided view
        assert got.shape == tuple(expected.shape) == (3, 2, Tq, left + Tq)
        np.testing.assert_array_equal(got, expected.numpy())

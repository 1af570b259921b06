"""The offline (non-streaming) model computes what it computed before streaming support
existed: a saved output of the model code at commit 8dcfbde (before the chunked encoder)
must be reproduced by today's code with the default (full-context) settings.

The fixture holds a small transducer's weights, a padded batch, and what that code gave:
encoder output (eval mode) and the simple / pruned losses (training mode, dropout 0, so the
masked batch-norm statistics are used). ``make_fixture()`` below is how it was written.

Tolerance: the fixture was written by float32 kernels of one CPU; another CPU (AMD and Intel
run different MKL/oneDNN code paths for the same capability string) sums in another order.
How far float32 rounding moves each output is measured here, on this CPU, as the distance
between today's float32 run and the same model evaluated in float64; the fixture's machine
had rounding noise of the same order, so the two float32 runs may differ by a few times that
(``NOISE_FACTOR``). A real change of the model moves outputs by orders of magnitude more:
the test checks that one perturbed weight fails the comparison.
"""

from pathlib import Path

import pytest
import torch

from asr_recipes.models.build import build_transducer
from asr_recipes.models.lattice import LatticeConfig
from tests.numerics import float32_sum_tol

FIXTURE = Path(__file__).parent / "fixtures" / "offline_transducer_8dcfbde.pt"
CONFIG = dict(d_model=32, num_heads=4, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.0,
              subsampling_channels=8, conv_norm="batch", decoder_dim=24, context_size=2, joiner_dim=24)
VOCAB = 20
#: both float32 runs sit within the measured noise of the float64 value: their distance is at
#: most twice that; 4x leaves room for a CPU whose rounding is somewhat worse than this one's
NOISE_FACTOR = 4.0


def outputs(model, batch):
    """(encoder_out (N, T', D), encoder_lens, simple (N,), pruned (N,)) of one batch."""
    model.eval()
    with torch.no_grad():
        enc, enc_lens = model.encode(batch["features"], batch["feature_lens"])
    model.train()
    with torch.no_grad():
        simple, pruned = model(batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"],
                               LatticeConfig(prune_range=3), reduction="none")
    return enc, enc_lens, simple, pruned


def make_fixture(path: Path = FIXTURE) -> None:
    """Written once with the code of commit 8dcfbde (machine-specific keys it also stored were
    dropped later, so that the file loads with torch.load(weights_only=True)):
    `OMP_NUM_THREADS=1 python -c "from tests.models.test_offline_unchanged import make_fixture; make_fixture()"`."""
    torch.manual_seed(0)
    model = build_transducer(CONFIG, VOCAB)
    g = torch.Generator().manual_seed(1)
    feature_lens = torch.tensor([160, 131, 77])
    batch = {"features": torch.randn(3, 160, 80, generator=g), "feature_lens": feature_lens,
             "tokens": torch.randint(2, VOCAB, (3, 9), generator=g), "token_lens": torch.tensor([9, 6, 4])}
    state = {k: v.clone() for k, v in model.state_dict().items()}  # before training mode moves BN statistics
    enc, enc_lens, simple, pruned = outputs(model, batch)
    torch.save({"config": CONFIG, "vocab_size": VOCAB, "state_dict": state, "batch": batch,
                "encoder_out": enc, "encoder_lens": enc_lens, "simple": simple, "pruned": pruned}, path)


def differences(state_dict, saved) -> dict:
    """For encoder output and both losses: (largest |today - fixture|, allowed distance)."""
    model = build_transducer(saved["config"], saved["vocab_size"])
    model.load_state_dict(state_dict)
    enc, lens, simple, pruned = outputs(model, saved["batch"])
    assert torch.equal(lens, saved["encoder_lens"])
    exact = build_transducer(saved["config"], saved["vocab_size"]).double()
    exact.load_state_dict(state_dict)
    enc64, _, simple64, pruned64 = outputs(exact, {**saved["batch"], "features": saved["batch"]["features"].double()})
    valid = [(n, T) for n, T in enumerate(lens.tolist())]  # frames past a length are padding: not compared
    got = torch.cat([enc[n, :T].flatten() for n, T in valid])
    want = torch.cat([saved["encoder_out"][n, :T].flatten() for n, T in valid])
    noise = torch.cat([(enc[n, :T] - enc64[n, :T]).abs().flatten() for n, T in valid]).max().item()
    result = {"encoder_out": ((got - want).abs().max().item(), NOISE_FACTOR * noise)}
    # The losses are float32 lattice recursions: a path adds T' + U log-probabilities, and besides
    # the noise they inherit from the encoder, those sums may round differently on another CPU.
    path_terms = int(lens.max()) + int(saved["batch"]["token_lens"].max())
    for name, today, exact_value in (("simple", simple, simple64), ("pruned", pruned, pruned64)):
        noise = (today.double() - exact_value).abs().max().item()
        floor = float32_sum_tol(saved[name].abs().max().item(), path_terms, ulps=4.0)
        result[name] = ((today - saved[name]).abs().max().item(), max(NOISE_FACTOR * noise, floor))
    return result


def test_offline_transducer_reproduces_the_saved_output():
    saved = torch.load(FIXTURE, weights_only=True)
    for name, (diff, allowed) in differences(saved["state_dict"], saved).items():
        assert diff <= allowed, f"{name}: today's output differs from the fixture by {diff:.3g} (allowed {allowed:.3g})"


@pytest.mark.parametrize("weight,delta", [("encoder.layers.1.ff.net.0.weight", 1e-3),
                                          ("decoder.embedding.weight", 1e-2), ("joiner.output_linear.bias", 1e-2)])
def test_a_real_change_of_the_model_fails_the_comparison(weight, delta):
    """The tolerance is not so wide that it hides a change: nudge one number of one weight of
    the encoder, the decoder (seen by the losses only) or the joiner (the pruned loss only)."""
    saved = torch.load(FIXTURE, weights_only=True)
    state = {k: v.clone() for k, v in saved["state_dict"].items()}
    state[weight].view(-1)[3] += delta
    changed = [name for name, (diff, allowed) in differences(state, saved).items() if diff > allowed]
    assert changed, f"a change of {delta} in {weight} went unnoticed"

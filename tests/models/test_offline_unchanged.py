"""The offline (non-streaming) model computes exactly what it computed before streaming
support existed: a saved output of the model code at commit 8dcfbde (before the chunked
encoder) must be reproduced by today's code with the default (full-context) settings.

The fixture holds a small transducer's weights, a padded batch, and what that code gave:
encoder output (eval mode) and the simple / pruned losses (training mode, dropout 0, so the
masked batch-norm statistics are used). ``make_fixture()`` below is how it was written.
On a CPU with the same kernel capability as the one that wrote it the match must be exact
(bit-identical) when the thread count is the same too (it changes the summation order); elsewhere float32 kernels may sum in another order, so a tolerance of
float32 noise is allowed.
"""

from pathlib import Path

import torch

from asr_recipes.models.build import build_transducer
from asr_recipes.models.lattice import LatticeConfig

FIXTURE = Path(__file__).parent / "fixtures" / "offline_transducer_8dcfbde.pt"
CONFIG = dict(d_model=32, num_heads=4, ff_dim=64, num_layers=2, kernel_size=7, dropout=0.0,
              subsampling_channels=8, conv_norm="batch", decoder_dim=24, context_size=2, joiner_dim=24)
VOCAB = 20


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
    """Written once with the code of commit 8dcfbde, with the thread count the tests use (tests/conftest.py):
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
                "encoder_out": enc, "encoder_lens": enc_lens, "simple": simple, "pruned": pruned,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
                "threads": torch.get_num_threads()}, path)


def test_offline_transducer_reproduces_the_saved_output():
    # the fixture records torch.__version__, a TorchVersion (a str subclass): allow exactly that type
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        saved = torch.load(FIXTURE, weights_only=True)
    model = build_transducer(saved["config"], saved["vocab_size"])
    model.load_state_dict(saved["state_dict"])
    enc, enc_lens, simple, pruned = outputs(model, saved["batch"])
    same_kernels = (saved["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
                    and saved["torch"] == torch.__version__ and saved["threads"] == torch.get_num_threads())
    tol = dict(rtol=0.0, atol=0.0) if same_kernels else dict(rtol=1e-5, atol=1e-5)
    assert torch.equal(enc_lens, saved["encoder_lens"])
    for n, T in enumerate(enc_lens.tolist()):  # frames past a length are padding: not part of the contract
        torch.testing.assert_close(enc[n, :T], saved["encoder_out"][n, :T], **tol)
    torch.testing.assert_close(simple, saved["simple"], **tol)
    torch.testing.assert_close(pruned, saved["pruned"], **tol)

"""On-the-fly augmentation whose randomness is a function of (seed, epoch, batch).

lhotse's transforms draw from process-wide generators: ``SpecAugment`` from Python's
``random``, numpy and torch, ``CutMix`` from a generator it creates once per process. In
DataLoader workers those streams run ahead of the training loop and start over with every
new worker, so a run resumed mid-epoch (new workers, first batch = batch k of the epoch)
would augment batch k with the draws the uninterrupted run used for batch 0. Here every
batch gets its own seed instead, derived from (seed, epoch, the batch's cut ids): the cut
ids of the k-th batch of an epoch are fixed by the sampler's seed and state, so batch k
is augmented identically whether it is produced in the training process or in a worker,
before or after a resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from typing import Iterable, Iterator

import numpy as np
import torch
from lhotse import CutSet


def batch_seed(seed: int, epoch: int, cut_ids: Iterable[str]) -> int:
    """A 63-bit seed for one batch: a hash of (seed, epoch, the sorted cut ids)."""
    text = "\n".join([str(seed), str(epoch), *sorted(cut_ids)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's ``random``, numpy's legacy global generator and torch's CPU generator
    for the duration of the block, then put their previous states back (so augmenting in
    the training process does not disturb e.g. dropout's random stream)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class NoiseMix:
    """Cut transform: mix a random noise cut into each cut with probability ``prob`` at an SNR
    drawn uniformly from ``snr`` (dB), keeping the cut's id and duration (lhotse
    ``CutSet.mix``; with precomputed features the mixing happens on the fbank energies).

    Its random choices come from Python's global ``random``, so under :func:`seeded` they
    are a function of the batch seed.
    """

    def __init__(self, noise: CutSet, snr: tuple[float, float], prob: float):
        if len(noise) == 0:
            raise ValueError("NoiseMix needs at least one noise cut")
        self.noise, self.snr, self.prob = noise, tuple(snr), prob

    def __call__(self, cuts: CutSet) -> CutSet:
        rng = random.Random(random.getrandbits(64))
        return cuts.mix(cuts=self.noise, duration=None, snr=self.snr, mix_prob=self.prob, preserve_id="left",
                        seed=rng, random_mix_offset=True).to_eager()

"""Every random stream of one trial, named in one place and derived from its ``seed``.

A trial draws from five independent streams besides the model's initialisation. Each has its own
seed, derived from the trial's ``seed`` by one fixed law, so changing one stream's use (say, a
second draw of the shuffle) never shifts another stream's numbers::

    stream         seed           drawn by
    init           seed           the model's parameters (torch.manual_seed in ``build_model``)
    shuffle        7·seed + 1     the batch order of every epoch (a CPU ``torch.Generator``)
    masking        7·seed + 2     ModalityMasking's own generator
    perturbation   7·seed + 3     ModalityPerturbation's own generator
    dropout        7·seed + 4     torch's global RNG during training: dropout, anything else on it
    rms_subset     7·seed + 5     the training clips ``measure_rms`` reads for ``sigma_scale="rms"``

The offsets are those the project has always used (they were once spelled inline in the
training loop and ``models/seam.py``), so a seed gives the same numbers as before. The factor 7
keeps the streams of seeds s and s+1 apart (7s+1..7s+5 never meets 7(s+1)+1..7(s+1)+5).

The test-time diagnostics draw from ``diag_seed`` instead (:mod:`tune_m3.training.diagnostics`):
two trials with different seeds are damaged on the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Streams"]

_STRIDE = 7  # seeds per trial: 7·seed + (1..5); 0 is unused, 6 spare


@dataclass(frozen=True)
class Streams:
    """The seeds of one trial's random streams (see the module docstring for who draws each).

    Example::

        s = Streams.of(cfg.seed)
        shuffle = torch.Generator().manual_seed(s.shuffle)
    """

    init: int
    shuffle: int
    masking: int
    perturbation: int
    dropout: int
    rms_subset: int

    @classmethod
    def of(cls, seed: int) -> Streams:
        """The streams of a trial with this ``seed``."""
        base = _STRIDE * int(seed)
        return cls(
            init=int(seed),
            shuffle=base + 1,
            masking=base + 2,
            perturbation=base + 3,
            dropout=base + 4,
            rms_subset=base + 5,
        )

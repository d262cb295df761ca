"""What every ``mmsa:<Model>`` adapter shares: importing MMSA, MMSA's config, its time-averaging.

An adapter builds MMSA's class from MMSA's own ``config_regression.json`` defaults for the
dataset's shape (``mosei`` when the audio features are 74-d, else ``mosi``; ``model.dataset``
chooses), ``feature_dims`` from the data and every other key overridable as ``model.<key>``.
An unknown key is a TypeError listing MMSA's keys (the seam turns it into one error line).
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor, nn

from tune_m3.errors import UserError
from tune_m3.names import MODALITIES
from tune_m3.padding import valid_mask

__all__ = ["INSTALL", "MMSAModel", "import_mmsa", "valid_mean"]

INSTALL = "pip install -e '.[mmsa]' (or pip install mmsa==2.2.1)"


def import_mmsa() -> Any:
    """MMSA's ``models.singleTask`` and ``config`` modules; UserError if MMSA is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MMSA imports transformers: never go online
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from MMSA import config
        from MMSA.models import singleTask
    except ImportError as err:
        raise UserError(
            f"'mmsa:' models need the MMSA package ({err}); install the extra: {INSTALL}"
        ) from None
    return singleTask, config


def dataset_of(input_dims: dict[str, int]) -> str:
    return "mosei" if input_dims["audio"] == 74 else "mosi"


def valid_mean(x: Tensor, lengths: Tensor) -> Tensor:
    """(B, N, d) front-padded, (B,) valid steps -> (B, 1, d): the mean over the valid steps
    (MMSA's ``need_normalized`` time-averaging, without the padding)."""
    valid = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)  # (B, N, 1)
    mean = (x * valid).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(x.dtype)  # (B, d)
    return mean.unsqueeze(1)


class MMSAModel(nn.Module):
    """MMSA's class ``mmsa_model`` (config key ``mmsa_key``) as ``self.model``.

    ``self.config`` is the config it was built from (for inspection); :meth:`prepare` lets a
    subclass adjust it first, as MMSA's own runner does (``AMIO``). The prediction is MMSA's
    ``M`` (``output_key``).
    """

    mmsa_model = ""
    mmsa_key = ""
    output_key = "M"
    augment_at = "input"

    def __init__(self, input_dims: dict[str, int], dataset: str | None = None, **overrides: Any):
        super().__init__()
        single, config = import_mmsa()
        args = config.get_config_regression(self.mmsa_key, dataset or dataset_of(input_dims))
        unknown = sorted(set(overrides) - set(args))
        if unknown:
            raise TypeError(
                f"{self.mmsa_model} has no config key(s) {unknown}; MMSA's keys: "
                f"{', '.join(sorted(args))}"
            )
        args.update(overrides)
        args.feature_dims = [input_dims[m] for m in MODALITIES]  # MMSA: (text, audio, vision)
        args.train_mode = "regression"
        self.prepare(args)
        self.config = dict(args)  # what MMSA's model was built from
        self.model = getattr(single, self.mmsa_model)(args)

    def prepare(self, args: Any) -> None:
        """Adjust MMSA's config (an EasyDict) before the model is built; nothing by default."""

"""``python -m tune_m3.models``: the models tune_m3 trains by name, their hooks and sizes.

First the built-ins (class, default kwargs, default ``augment_at``, parameter counts at
CMU-MOSEI and CMU-MOSI dims), then the MMSA zoo (:mod:`tune_m3.models.mmsa`): with the
extra installed, each offered ``mmsa:<Model>`` with its default hooks and parameter counts;
without it, one line saying how to install it. Then the zoo names refused, one line each with
the reason. The zoo's lists are read from ``tune_m3.models.mmsa`` (``ADAPTERS`` and the
refusal tables), so a newly adapted model appears here without a change to this file.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from tune_m3.errors import UserError
from tune_m3.models.seam import BUILTINS, resolve_class

DIMS = {
    "CMU-MOSEI": {"text": 300, "audio": 74, "vision": 35},
    "CMU-MOSI": {"text": 300, "audio": 5, "vision": 20},
}


def builtins() -> None:
    for name in BUILTINS:
        cls, augment_at = resolve_class(name)
        params = inspect.signature(cls.__init__).parameters.values()
        kwargs = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        print(f"{name} ({cls.__module__}.{cls.__name__}), default augment_at: {augment_at}")
        print("  kwargs: " + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
        for ds, dims in DIMS.items():
            n = sum(p.numel() for p in cls(dims).parameters())
            print(f"  parameters at {ds} dims {tuple(dims.values())}: {n:,}")


def zoo_offered(mmsa) -> bool:
    """Each offered ``mmsa:<Model>``; False (after one line) when MMSA cannot be imported."""
    names = list(mmsa.ADAPTERS)
    try:
        mmsa.mmsa_class(mmsa.PREFIX + names[0])  # imports MMSA: UserError when it is missing
    except UserError:
        print(f"MMSA zoo (mmsa:<Model>): not installed; install the extra: {mmsa.INSTALL}")
        return False
    print(f"MMSA zoo ({len(names)} models; kwargs: the keys of MMSA's config_regression.json)")
    for name in names:
        spec = mmsa.PREFIX + name
        cls, augment_at = resolve_class(spec)
        origin = f"MMSA's {getattr(cls, 'mmsa_model', name)}"
        print(
            f"{spec} ({cls.__module__}.{cls.__name__}: {origin}), default augment_at: {augment_at}"
        )
        output_key = getattr(cls, "output_key", None)
        if output_key is not None:
            print(f"  output_key: {output_key}")
        for ds, dims in DIMS.items():
            n = mmsa.parameter_count(spec, dims)
            print(f"  parameters at {ds} dims {tuple(dims.values())}: {n:,}")
    return True


def zoo_refused(mmsa) -> Iterator[tuple[str, str]]:
    """(name, one-line reason) of every MMSA model tune_m3 names but does not offer."""
    for name, why in mmsa.NEEDS_BERT.items():
        yield name, f"needs pretrained BERT weights, downloaded at run time: {why}"
    for name, single in mmsa.SINGLE_TASK.items():
        yield (
            name,
            (
                "multi-task, configured by MMSA for CH-SIMS only (unimodal labels); "
                f"use {mmsa.PREFIX}{single}"
            ),
        )
    for name, why in mmsa.NOT_PER_SAMPLE.items():
        yield name, f"not trainable per sample: {why}"


def main() -> None:
    builtins()
    from tune_m3.models import mmsa

    print()
    zoo_offered(mmsa)
    refused = list(zoo_refused(mmsa))
    if refused:
        print("refused (one line each at --dry-run and before training):")
        for name, why in refused:
            print(f"  {mmsa.PREFIX}{name}: {why}")


if __name__ == "__main__":
    main()

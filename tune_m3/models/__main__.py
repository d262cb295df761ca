"""``python -m tune_m3.models``: the built-in models, their default kwargs, hooks and sizes."""

from __future__ import annotations

import inspect

from tune_m3.models.seam import BUILTINS, resolve_class

DIMS = {
    "CMU-MOSEI": {"text": 300, "audio": 74, "vision": 35},
    "CMU-MOSI": {"text": 300, "audio": 5, "vision": 20},
}


def main() -> None:
    for name in BUILTINS:
        cls, augment_at = resolve_class(name)
        params = inspect.signature(cls.__init__).parameters.values()
        kwargs = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        print(f"{name} ({cls.__module__}.{cls.__name__}), default augment_at: {augment_at}")
        print("  kwargs: " + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
        for ds, dims in DIMS.items():
            n = sum(p.numel() for p in cls(dims).parameters())
            print(f"  parameters at {ds} dims {tuple(dims.values())}: {n:,}")


if __name__ == "__main__":
    main()

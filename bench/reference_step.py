"""Training steps of the M3 authors' baseline, timed on request: the other side of ``bench_step.py --reference``.

Runs under the Python of a separate environment that can import the authors' code
(efthymisgeo/multimodal-masking, ``modules/baseline.py``: ``AudioVisualTextMaskedClassifier``),
because that code needs ``slp==1.2.1`` and its small dependencies, which tune_m3 does not install:

    python3 -m venv ref-venv
    ref-venv/bin/pip install torch==2.13.0 numpy loguru validators==0.18.2 ujson toolz omegaconf
    ref-venv/bin/pip install --no-deps slp==1.2.1

Nothing of the authors' code is in this repository: ``DIR`` is a checkout of theirs. This file
imports nothing from tune_m3, so it runs in that environment as it is. ``bench_step.py`` starts
it, then alternates with it over a pipe: each line ``run`` on stdin times one block of
``--steps`` training steps and answers one JSON line ``{"rate": samples/s}``; ``quit`` ends it.

The model is built as the authors' ``experiments/main.py`` builds it from
``configs/m3-rnn-hard-0.2-before.yml`` (hidden 100, dropout 0.2, bidirectional LSTMs with
summed directions and packed sequences, hard M3 with p 0.2 and (1/3, 1/3, 1/3) before fusion,
drawn once per batch); one step is forward, L1 loss, backward and Adam(lr 5e-4), like theirs.
The batches come from :func:`batches`, which ``bench_step.py`` also uses, so both sides train
on the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

MOSEI_DIMS = {"text": 300, "audio": 74, "visual": 35}  # the authors' names for the modalities


def batches(n: int, B: int, L: int, seed: int = 0) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """``n`` full-length batches: ([x_T (B, L, 300), x_A (B, L, 74), x_V (B, L, 35)], y (B,)).

    Standard normal float32 from one numpy generator, so both sides of the comparison see the
    same numbers whichever torch they run.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        xs = [rng.standard_normal((B, L, d), dtype=np.float32) for d in MOSEI_DIMS.values()]
        out.append((xs, rng.standard_normal(B, dtype=np.float32)))
    return out


def build(root: Path) -> torch.nn.Module:
    """The authors' ``AudioVisualTextMaskedClassifier`` with their M3 run's settings."""
    if not (root / "modules" / "baseline.py").is_file():
        raise SystemExit(
            f"error: --reference {root}: no modules/baseline.py there (want a checkout of "
            "efthymisgeo/multimodal-masking)"
        )
    sys.path.insert(0, str(root))
    try:
        from modules.baseline import AudioVisualTextMaskedClassifier
    except ImportError as err:
        raise SystemExit(
            f"error: the authors' code does not import under {sys.executable} ({err}); "
            "make its environment as this file's docstring says and pass --reference-python"
        ) from None
    return AudioVisualTextMaskedClassifier(
        MOSEI_DIMS,
        1,
        num_layers=1,
        bidirectional=True,
        rnn_type="lstm",
        attention=True,
        hidden_size=100,
        dropout=0.2,
        p_mmdrop=0.2,
        p_drop_modalities=[1 / 3, 1 / 3, 1 / 3],
        multi_modal_drop="mmdrop_hard",
        mmdrop_before_fuse=True,
        mmdrop_after_fuse=False,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="a checkout of efthymisgeo/multimodal-masking")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build(args.root.resolve()).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    B = args.batch
    data = [
        (
            dict(zip(MOSEI_DIMS, map(torch.from_numpy, xs), strict=True)),
            {"text": torch.full((B,), args.seq_len, dtype=torch.long)},
            torch.from_numpy(y),
        )
        for xs, y in batches(args.steps, B, args.seq_len, args.seed)
    ]

    def block() -> float:
        t0 = time.perf_counter()
        for inputs, lengths, y in data:
            loss = (model(inputs, lengths).squeeze(-1) - y).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return B * len(data) / (time.perf_counter() - t0)

    block()  # warm-up
    n_params = sum(q.numel() for q in model.parameters())
    print(json.dumps({"ready": True, "params": n_params, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        print(json.dumps({"rate": block()}), flush=True)


if __name__ == "__main__":
    main()

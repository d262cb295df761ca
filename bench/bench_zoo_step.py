"""Zoo models through tune_m3's training step against the same MMSA model in a plain loop.

    python bench/bench_zoo_step.py --models mmsa:TFN,mmsa:LMF,mmsa:MulT --steps 2,10,1 \\
        --rounds 40 --control [--split] [--threads 1] [--json FILE]

Issue [zoo] item 7: the seam's overhead on a zoo model's training step, target <= 5 %. Per
model, three sides train on the same batches (MOSEI dims (300, 74, 35), B = 32, L = 50, every
clip full length), in one process on ``--threads`` torch threads:

  plain  MMSA's class (``MMSA.models.singleTask``) built from MMSA's ``config_regression.json``
         for MOSEI with the data's ``feature_dims``, initialised from the same seed as tune_m3's
         (its weights are checked equal), fed what MMSA's data loader gives it: text (B, L, 300);
         with ``need_normalized`` (TFN, LMF) audio and vision averaged over time, (B, 1, d),
         computed once outside the timing. One step: forward, L1 loss on ``M``, backward, Adam.
  seam   tune_m3's own step, :func:`tune_m3.training.epoch.train_step` (what ``train_epoch``
         runs per batch) on a :func:`tune_m3.training.state.setup` run state: the adapter, the
         seam (``AugmentedModel``) with no augmentation (scheme none), the L1 loss, the finite
         check, backward, Adam. The pure cost of the seam: the <= 5 % target.
  m3     the same with hard M3 (pM 0.3, the default pi 1/3 each and timestep units) at the
         model's default hooks (the per-modality subnets of TFN / LMF, the input of MulT):
         what a user pays for M3.

``--control`` adds ``plain_b``, a second copy of plain (its "overhead" is the measurement's
spread); ``--split`` adds ``adapter`` (tune_m3's adapter alone) and ``wrapped`` (the adapter in
the seam's ``AugmentedModel``), both in plain's loop on tune_m3's batches.

The sides alternate in blocks of ``--steps`` steps, the order reversed every round, round 0
warms up and is not counted (``bench_step.alternate``). Overhead per round = (seconds per
step of the side) / (seconds per step of ``plain``) - 1; the median over rounds is quoted,
by the wall clock and by this process's CPU time (``time.process_time``): on a shared
machine whose load swings within a round, the waits inflate wall-clock blocks at random,
CPU time far less. Prints the rates per round and a paragraph per model; ``--json`` writes
the per-round rates, the CPU (model name, AVX2 / AVX-512) and the load average before and
after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import DIMS, alternate, kernel_note, train_block  # noqa: E402

from tune_m3.batches import batch_tensors  # noqa: E402
from tune_m3.config import MODALITY_NAMES, TrialConfig  # noqa: E402
from tune_m3.linear_kernel import cpu_identity  # noqa: E402
from tune_m3.streams import Streams  # noqa: E402
from tune_m3.training.epoch import train_step  # noqa: E402
from tune_m3.training.state import setup  # noqa: E402

SIDES = {
    "seam": {"scheme": "none", "p_mask": 0.0},
    "m3": {"scheme": "m3", "p_mask": 0.3},
}


def cpu_line() -> dict:
    """The CPU's model name, its widest vector extension, the load average now."""
    model, flags = cpu_identity()
    vector = "AVX-512" if "avx512f" in flags.split() else "AVX2" if "avx2" in flags else "other"
    return {"cpu": model, "vector": vector, "cores": os.cpu_count(), "load": os.getloadavg()}


def synthetic_split(B: int, L: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A SYNTHETIC training split of ``steps * B`` full-length clips at MOSEI dims."""
    rng = np.random.default_rng(seed)
    n = steps * B
    arr = {
        m: rng.standard_normal((n, L, d), dtype=np.float32)
        for m, d in zip(MODALITY_NAMES, DIMS, strict=True)
    }
    arr["labels"] = rng.uniform(-3, 3, n).astype(np.float32)
    arr["lengths"] = np.full(n, L, dtype=np.int64)
    return arr


def tensor_batches(arr, B: int, steps: int) -> list:
    """The split's ``steps`` batches as training gets them: ({l: (B, L, d_l)}, {l: (B,)}, (B,))."""
    rows = [np.arange(i * B, (i + 1) * B) for i in range(steps)]
    return [batch_tensors(arr, idx, MODALITY_NAMES, "cpu") for idx in rows]


def tune_m3_block(spec: str, side: str, arr, B: int, threads: int, steps: int):
    """A timed block of tune_m3's real training step; returns (block, run state)."""
    cfg = TrialConfig(model=spec, batch_size=B, threads=threads, **SIDES[side])
    state = setup(cfg, arr)
    state.model.train()
    batches = tensor_batches(arr, B, steps)

    def block() -> float:
        t0 = time.perf_counter()
        for mods, lengths, y in batches:
            train_step(state, mods, lengths, y, epoch=1)
        return B * steps / (time.perf_counter() - t0)

    return block, state


def plain_model(spec: str, cfg: TrialConfig) -> tuple[torch.nn.Module, bool]:
    """MMSA's class from MMSA's MOSEI config, seeded like tune_m3's; (model, need_normalized)."""
    from MMSA import config
    from MMSA.models import singleTask

    from tune_m3.models.mmsa import mmsa_class

    adapter = mmsa_class(spec)  # only for MMSA's class name and config key
    args = config.get_config_regression(adapter.mmsa_key, "mosei")
    args.feature_dims = list(DIMS)
    args.train_mode = "regression"
    torch.manual_seed(Streams.of(cfg.seed).init)
    net = getattr(singleTask, adapter.mmsa_model)(args).train()
    return net, bool(args.get("need_normalized"))


def plain_block(spec: str, state, arr, B: int, steps: int):
    """A timed block of the plain loop on MMSA's own class (``bench_step.train_block``)."""
    net, pooled = plain_model(spec, state.cfg)
    ours = state.model.net.model.state_dict()
    same = all(torch.equal(v, ours[k]) for k, v in net.state_dict().items())
    if not same or set(ours) != set(net.state_dict()):
        raise SystemExit(f"error: {spec}: MMSA's model and tune_m3's differ in their weights")
    batches = []
    for i in range(steps):
        rows = slice(i * B, (i + 1) * B)
        xs = [torch.from_numpy(arr[m][rows]) for m in MODALITY_NAMES]  # (B, L, d_l)
        if pooled:  # MMSA's loader: audio and vision averaged over time (full-length clips)
            xs[1:] = [x.mean(1, keepdim=True) for x in xs[1:]]  # (B, 1, d_l)
        batches.append((xs, None, torch.from_numpy(arr["labels"][rows])))
    forward = lambda xs, _: net(*xs)["M"].squeeze(-1)  # noqa: E731  (B,)
    return train_block(forward, net.parameters(), batches, B, lr=state.cfg.lr)


def split_blocks(spec: str, arr, B: int, threads: int, steps: int) -> dict:
    """``--split``: the tune_m3 side taken apart, each in ``bench_step.train_block``'s plain loop
    on tune_m3's batches: ``adapter`` (MMSA's model behind tune_m3's adapter, which pools audio
    and vision itself), ``wrapped`` (that in the seam's ``AugmentedModel``, M3 off). Against
    ``plain`` and ``seam`` they say which layer costs what."""
    batches = tensor_batches(arr, B, steps)
    out = {}
    for side in ("adapter", "wrapped"):
        _, state = tune_m3_block(spec, "seam", arr, B, threads, steps)  # a fresh, same-init copy
        if side == "adapter":
            net = state.model.net
            forward = lambda mods, ln, net=net: net(mods, ln)["M"].squeeze(-1)  # noqa: E731
        else:
            forward = state.model  # (B,)
        out[side] = train_block(forward, state.model.parameters(), batches, B, lr=state.cfg.lr)
    return out


def with_cpu_time(block, samples: int, cpu_rates: list[float]):
    """``block`` (returns wall-clock samples/s), also appending its samples per CPU second
    (``time.process_time``: this process's CPU time, all threads) to ``cpu_rates``."""

    def run() -> float:
        c0 = time.process_time()
        rate = block()
        cpu_rates.append(samples / (time.process_time() - c0))
        return rate

    return run


def overheads(rates: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per round, (seconds per step of a side) / (seconds per step of plain) - 1."""
    return {
        s: [p / r - 1 for p, r in zip(rates["plain"], v, strict=True)]
        for s, v in rates.items()
        if s != "plain"
    }


def compare(
    spec: str,
    B: int,
    L: int,
    threads: int,
    steps: int,
    rounds: int,
    control: bool = False,
    split: bool = False,
) -> dict:
    """Plain, seam and m3 alternated; per-round rates and overheads for one model, by the
    wall clock and by CPU time (which a busy shared machine's waits do not inflate).
    ``control``: also a second plain model (``plain_b``, same init): its "overhead" is the
    measurement's own spread. ``split``: also :func:`split_blocks`' sides."""
    arr = synthetic_split(B, L, steps)
    blocks, states = {}, {}
    for side in SIDES:
        blocks[side], states[side] = tune_m3_block(spec, side, arr, B, threads, steps)
    plain = {"plain": plain_block(spec, states["seam"], arr, B, steps)}
    if control:
        plain["plain_b"] = plain_block(spec, states["seam"], arr, B, steps)
    if split:
        plain.update(split_blocks(spec, arr, B, threads, steps))
    blocks = {**plain, **blocks}
    cpu: dict[str, list[float]] = {k: [] for k in blocks}
    blocks = {k: with_cpu_time(b, B * steps, cpu[k]) for k, b in blocks.items()}
    torch.set_num_threads(threads)
    rates = alternate(blocks, rounds, swap=True, say=True)
    cpu = {k: v[1:] for k, v in cpu.items()}  # round 0 warms up: not counted
    params = sum(p.numel() for p in states["seam"].model.parameters() if p.requires_grad)
    return {
        "rates": rates,
        "overhead": overheads(rates),
        "cpu_rates": cpu,
        "cpu_overhead": overheads(cpu),
        "params": params,
        "steps": steps,
    }


def report(spec: str, res: dict, threads: int) -> str:
    """One paragraph per model: median samples/s per side and the overheads, per round."""
    lines = [f"{spec} ({res['params']:,} params, {threads} thread(s), {res['steps']} steps/block)"]
    for clock, rates, over in (
        ("wall", res["rates"], res["overhead"]),
        ("CPU time", res["cpu_rates"], res["cpu_overhead"]),
    ):
        med = {k: statistics.median(v) for k, v in rates.items()}
        parts = [f"  by {clock}: plain {med['plain']:.1f} samples/s"]
        for s in over:
            per = ", ".join(f"{100 * x:+.1f}" for x in over[s])
            parts.append(
                f"{s} {med[s]:.1f}, overhead median {100 * statistics.median(over[s]):+.1f} % "
                f"(per round: {per})"
            )
        lines.append("; ".join(parts))
    return "\n".join(lines)


def parse_args() -> tuple[argparse.Namespace, list[str], list[int]]:
    """(options, model specs, steps per block of each); argparse's error (exit 2) if bad."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mmsa:TFN,mmsa:LMF", help="comma list of mmsa:<Model>")
    p.add_argument("--threads", type=int, default=1, help="torch threads (all sides)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument(
        "--steps",
        default="5",
        help="steps per timed block: one number, or one per model (e.g. 30,5,3: light models "
        "need more steps for a block long enough to time)",
    )
    p.add_argument("--rounds", type=int, default=10, help="counted rounds (plus one warm-up)")
    p.add_argument(
        "--control",
        action="store_true",
        help="also time a second plain model (plain_b): the spread of two identical sides",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="also time the adapter alone and the adapter in the seam in a plain loop",
    )
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args()
    specs = args.models.split(",")
    steps = [int(x) for x in args.steps.split(",") if x.isdigit() and int(x) > 0]
    if len(steps) == 1:
        steps *= len(specs)
    if len(steps) != len(specs) or len(steps) != len(args.steps.split(",")):
        p.error(f"--steps: {args.steps!r} is not one positive integer or one per model")
    return args, specs, steps


def main() -> None:
    args, specs, steps = parse_args()
    torch.set_num_threads(args.threads)
    before = cpu_line()
    print(
        f"{before['cpu']} ({before['vector']}, {before['cores']} cores), load average "
        f"{' '.join(f'{x:.2f}' for x in before['load'])}; {kernel_note()}",
        flush=True,
    )
    out = {"command": " ".join(sys.argv), "machine": before, "settings": vars(args), "models": {}}
    for spec, n in zip(specs, steps, strict=True):
        res = compare(
            spec, args.batch, args.seq_len, args.threads, n, args.rounds, args.control, args.split
        )
        print(report(spec, res, args.threads), flush=True)
        out["models"][spec] = res
    out["load_after"] = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in out['load_after'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

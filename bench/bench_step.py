"""Training throughput of a model (samples/s) at MOSEI dims, B = 32, L = 50.

    python bench/bench_step.py --threads 1                       # the issue's step benchmark
    python bench/bench_step.py --threads 1 --procs 2             # 2 concurrent 1-thread trials
    python bench/bench_step.py --lengths random,bucketed         # batches as train() builds them
    python bench/bench_step.py --schemes none,m3,perturb --augment-cost
    python bench/bench_step.py --device cuda --procs 1,2,4,8 --amp none,bf16   # on a GPU machine
    python bench/bench_step.py --model mult --seq-len 50,500,500   # MulT on unaligned features
    python bench/bench_step.py --linear-kernels [--model mult]   # F.linear vs oneDNN per Linear shape
    python bench/bench_step.py --kernels --rounds 6 [--model mult]  # whole steps on each, alternated

``--mmsa DIR`` (with ``--model mult``): also time the MulT of the MMSA toolkit
(``MMSA/models/singleTask/MULT.py``, installed with ``pip install --no-deps --target DIR
mmsa==2.2.1``; nothing of it is in this repo) at the same dims, width, heads, layers and
dropouts, alternating the two in rounds in one process, and print the ratio of samples/s.

``--model``: any model spec of a space file (``m3_baseline``, ``mult``, ``module:Class``), built
through the same seam as training. ``--seq-len`` is one L for all modalities, or L_T,L_A,L_V
(unaligned; ``--lengths full`` only). FLOPs are counted by hand for the aligned baseline and by
torch's ``FlopCounterMode`` (one step, forward + backward) otherwise.

One training step = forward, L1 loss, backward, Adam step. Prints one line per configuration:
median samples/s over timed blocks (and, with several processes, each process's median and
their sum), the parameter count, the floating-point work per step and the fraction of the
device's measured matrix-multiply rate that this reaches.

``--lengths``:
  full      every clip fills L = 50 (the issue's definition of the step; nothing to skip)
  random    clip lengths drawn like the synthetic benchmark (uniform 6..50), random batches of
            32 cut to their longest clip (the paper's recipe, ``bucket_batches: false``)
  bucketed  the same clips, batches of similar length (``bucket_batches: true``)
For ``random`` and ``bucketed`` samples/s counts real clips, so less padding shows as speed.

``--procs K``: K processes each train their own model at once (like K trials on one node or
K trials sharing one GPU with fractional GPUs), started together behind a barrier.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from tune_m3.config import TrialConfig
from tune_m3.models import build_model
from tune_m3.names import MODALITIES
from tune_m3.training import epoch_batches

DIMS = (300, 74, 35)  # CMU-MOSEI: GloVe text, COVAREP audio, Facet vision
SCHEMES = {
    "none": {},
    "m3": {"scheme": "m3", "p_mask": 0.25, "pi_text": 0.6, "pi_audio": 0.2, "pi_vision": 0.2},
    "soft_m3": {"scheme": "soft_m3", "p_mask": 0.25},
    "random_mask": {"scheme": "random_mask", "p_mask": 0.2},
    "perturb": {"p_missing": 0.15, "p_noise": 0.15},
}


# -------------------------------------------------------------------------------------------------
# floating-point work, counted by hand (multiply + add = 2 FLOPs)


def step_flops(
    lengths_per_batch: list[int], B: int, dims=DIMS, h: int = 100, d: int = 100
) -> float:
    """FLOPs of one training step, averaged over batches whose padded length is N.

    Counts matrix multiplies only (elementwise work is < 2 % here):
      forward, per sample and step:  Bi-LSTM l: 2 dirs x 2 x 4h x (D_l + h)
                                     self-attention: 3 x 2 x 2h x d  +  2 x 2 x N x d
                                     4 cross modules: 6 x 2 x d x d  +  2 x 2 x 2 x N x d
                                     fusion Bi-LSTM: 2 x 2 x 4h x (7d + h);  head: 2 x 2h
      backward = 2 x forward, except that the encoders' input gradients (D_l -> gates) are
      not needed (the features do not require grad); Adam is elementwise.
    """
    total = 0.0
    for n in lengths_per_batch:
        enc_in = sum(2 * 2 * 4 * h * D for D in dims)  # input projections of 3 encoder Bi-LSTMs
        enc_rec = 3 * 2 * 2 * 4 * h * h
        self_attn = 3 * (3 * 2 * 2 * h * d + 2 * 2 * n * d)
        cross = 4 * (6 * 2 * d * d + 2 * 2 * 2 * n * d)
        fusion = 2 * 2 * 4 * h * (7 * d + h)
        per_step = enc_in + enc_rec + self_attn + cross + fusion
        fwd = B * n * per_step + B * 2 * 2 * h
        total += 3 * fwd - B * n * enc_in  # no gradient for the raw features
    return total / len(lengths_per_batch)


def matmul_rate(device: str, n: int = 2048, reps: int = 10, dtype=torch.float32) -> float:
    """Measured FLOP/s of a large square ``torch.matmul`` (median of ``reps``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def onednn_rate(n: int = 2048, reps: int = 10) -> float:
    """Measured FLOP/s of an n x n x n product through oneDNN (a 1 x 1 channels-last conv on CPU).

    The rate the baseline's Linear layers and LSTMs can reach (see tune_m3/models/layers.py);
    torch.matmul goes to the BLAS, which may run a narrower vector path on the same CPU.
    """
    from tune_m3.models.layers import pointwise_conv_linear

    x, w = torch.randn(1, n, n), torch.randn(n, n)
    for _ in range(3):
        pointwise_conv_linear(x, w, None)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pointwise_conv_linear(x, w, None)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def linear_kernels(model_name: str, B: int, L, reps: int = 20) -> None:
    """Every ``layers.linear`` call of one training forward of a built-in model (its Linear
    layers and the stacked Q/K/V products, at the shapes they really get), timed with
    ``F.linear`` (the BLAS) and with ``layers.linear`` (the 1 x 1 channels-last convolution on
    oneDNN where it applies): forward, and forward + backward, alternated, median of ``reps``."""
    import torch.nn.functional as F

    from tune_m3.models import layers

    model = build_model(TrialConfig(model=model_name), DIMS).train()
    calls: dict[tuple, int] = {}
    real = layers.linear

    def record(x, weight, bias=None):
        key = (tuple(x.shape), tuple(weight.shape), bias is not None)
        calls[key] = calls.get(key, 0) + 1
        return real(x, weight, bias)

    xs, ln, _ = make_batches("full", B, L, 1, seed=1)[0]
    layers.linear = record
    try:
        model(xs, ln)
    finally:
        layers.linear = real
    kernels = {"F.linear": F.linear, "layers.linear": real}
    print(f"{model_name}, B = {B}, L = {L}: the layers.linear calls of one forward, GFLOP/s")
    print(
        "| input -> d_out | calls | F.linear fwd | layers.linear fwd | ratio | "
        "F.linear fwd+bwd | layers.linear fwd+bwd | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    total = {k: 0.0 for k in kernels}
    for (shape, (d_out, d_in), has_bias), n in sorted(calls.items()):
        x = torch.randn(*shape, requires_grad=True)
        w = torch.randn(d_out, d_in, requires_grad=True)
        b = torch.randn(d_out, requires_grad=True) if has_bias else None
        g = torch.randn(*shape[:-1], d_out)
        flops = 2 * math.prod(shape) * d_out
        times = {(k, bwd): [] for k in kernels for bwd in (False, True)}
        for r in range(reps + 2):
            for (name, bwd), ts in times.items():
                t0 = time.perf_counter()
                y = kernels[name](x, w, b)
                if bwd:
                    torch.autograd.grad(y, [x, w], g)
                if r >= 2:  # two warm-up rounds
                    ts.append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in kernels:
            total[k] += n * med[k, True]
        rate = {k: (3 if k[1] else 1) * flops / t / 1e9 for k, t in med.items()}
        fwd = (rate["F.linear", False], rate["layers.linear", False])
        both = (rate["F.linear", True], rate["layers.linear", True])
        print(
            f"| {shape} -> {d_out} | {n} | {fwd[0]:.1f} | {fwd[1]:.1f} | {fwd[1] / fwd[0]:.2f} | "
            f"{both[0]:.1f} | {both[1]:.1f} | {both[1] / both[0]:.2f} |",
            flush=True,
        )
    print(
        f"all calls, forward + backward: F.linear {1e3 * total['F.linear']:.1f} ms, "
        f"layers.linear {1e3 * total['layers.linear']:.1f} ms "
        f"({total['F.linear'] / total['layers.linear']:.2f}x)"
    )


def kernel_note() -> str:
    """Choose the CPU Linear kernel now (outside any timed or FLOP-counted step); say which."""
    from tune_m3.linear_kernel import kernel_setting
    from tune_m3.models.layers import choose_kernel

    kernel = "oneDNN 1x1 conv" if choose_kernel() else "F.linear (BLAS)"
    return f"CPU Linear kernel: {kernel} ($TUNE_M3_CPU_LINEAR={kernel_setting()})"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -------------------------------------------------------------------------------------------------
# batches


def make_batches(mode: str, B: int, L, n_batches: int, seed: int = 0):
    """``n_batches`` of (features [x_T, x_A, x_V], lengths or None, labels), front-padded.

    ``L`` a tuple (L_T, L_A, L_V): unaligned full-length batches, lengths per modality."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    if isinstance(L, tuple):
        out = []
        for _ in range(n_batches):
            xs = [torch.randn(B, n, d, generator=g) for n, d in zip(L, DIMS, strict=True)]
            lens = {m: torch.full((B,), n) for m, n in zip(MODALITIES, L, strict=True)}
            out.append((xs, lens, torch.randn(B, generator=g)))
        return out
    if mode == "full":
        lens = [np.full(B, L)] * n_batches
    else:
        pool = rng.integers(6, L + 1, size=B * 50 * 4)  # like the synthetic generator
        batches = epoch_batches(len(pool), B, g, pool, bucket=(mode == "bucketed"))
        lens = [pool[b] for b in batches if len(b) == B][:n_batches]
    out = []
    for ln in lens:
        n = int(ln.max())  # cut to the longest clip, as batch_tensors does
        xs = [torch.randn(B, n, dim, generator=g) for dim in DIMS]
        valid = torch.arange(n)[None, :] >= (n - torch.as_tensor(ln))[:, None]  # (B, n)
        xs = [x * valid[..., None] for x in xs]
        lengths = None if int(ln.min()) == n else torch.as_tensor(ln, dtype=torch.long)
        out.append((xs, lengths, torch.randn(B, generator=g)))
    return out


# -------------------------------------------------------------------------------------------------
# one process


def run_steps(opts: dict, barrier=None) -> dict:
    """Time training steps in this process; returns samples/s per block and the setup."""
    torch.set_num_threads(opts["threads"])
    device = opts["device"]
    if device == "cpu":
        kernel_note()
    cfg = TrialConfig(**SCHEMES[opts["scheme"]], model=opts["model"])
    model = build_model(cfg, DIMS).to(device)
    model.train()
    counted = None
    if opts["model"] != "m3_baseline" or isinstance(opts["seq_len"], tuple):
        counted = counted_flops(model, opts["batch"], opts["seq_len"], device)
    if opts["compile"]:  # "default", or "reduce-overhead" (CUDA graphs on a GPU)
        model = torch.compile(model, mode=opts["compile"])
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    loss_fn = nn.L1Loss()
    B = opts["batch"]
    batches = [
        ([x.to(device) for x in xs], _to(ln, device), y.to(device))
        for xs, ln, y in make_batches(opts["lengths"], B, opts["seq_len"], opts["steps"])
    ]
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[opts["amp"]]
    scaler = torch.amp.GradScaler(device.split(":")[0]) if opts["amp"] == "fp16" else None

    def step(xs, ln, y):
        ctx = torch.autocast(device.split(":")[0], dtype=amp) if amp else nullcontext()
        with ctx:
            loss = loss_fn(model(xs, ln).float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for xs, ln, y in batches[:3]:  # warm-up (and compilation)
        step(xs, ln, y)
    _sync(device)
    if barrier is not None:
        barrier.wait()
    rates = []
    for _ in range(opts["blocks"]):
        t0 = time.perf_counter()
        for xs, ln, y in batches:
            step(xs, ln, y)
        _sync(device)
        rates.append(B * len(batches) / (time.perf_counter() - t0))
    n_params = sum(p.numel() for p in model.parameters())
    lens = [sum(x.shape[1] for x in xs) / len(xs) for xs, _, _ in batches]
    return {"rates": rates, "params": n_params, "padded_lengths": lens, "flops": counted}


def _to(lengths, device):
    if isinstance(lengths, dict):
        return {m: v.to(device) for m, v in lengths.items()}
    return None if lengths is None else lengths.to(device)


def counted_flops(model, B: int, L, device: str) -> float:
    """Matmul FLOPs of one training step (forward + backward) by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    xs, ln, _ = make_batches("full", B, L, 1, seed=1)[0]
    with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as fc:
        model([x.to(device) for x in xs], _to(ln, device)).sum().backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def _worker(opts, barrier, queue):
    queue.put(run_steps(opts, barrier))


def run_concurrent(opts: dict, procs: int) -> list[dict]:
    """``procs`` processes running :func:`run_steps` at once; one result per process."""
    if procs == 1:
        return [run_steps(opts)]
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(opts, barrier, queue)) for _ in range(procs)]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return results


def augment_seconds(cfg: TrialConfig, B=32, L=50, reps=200) -> float:
    """Median seconds of the augmentation layers alone on one batch of DNN-I outputs (3 x (B, L, d))."""
    model = build_model(cfg, DIMS)
    model.train()
    d = model.net.config.d  # the baseline's DNN-I width
    xs = [torch.randn(B, L, d, requires_grad=True) for _ in range(3)]
    lengths = torch.randint(L // 2, L + 1, (B,))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = model.augment(xs, lengths)
        sum(o.sum() for o in out).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_mmsa_mult(root: str):
    """MMSA's ``MULT`` class from ``root`` (a ``pip install --target`` directory), without running
    the package's ``__init__`` (which needs transformers for its BERT models)."""
    import importlib
    import sys
    import types
    from pathlib import Path

    base = Path(root) / "MMSA"
    if not (base / "models" / "singleTask" / "MULT.py").is_file():
        raise SystemExit(f"--mmsa {root}: no MMSA/models/singleTask/MULT.py there")
    for name, sub in (
        ("MMSA", ""),
        ("MMSA.models", "models"),
        ("MMSA.models.singleTask", "models/singleTask"),
        ("MMSA.models.subNets", "models/subNets"),
    ):
        mod = types.ModuleType(name)
        mod.__path__ = [str(base / sub)]
        sys.modules[name] = mod
    sys.modules["MMSA.models.subNets"].BertTextEncoder = None  # only with use_bert
    return importlib.import_module("MMSA.models.singleTask.MULT").MULT


def train_block(forward, params, batches, B: int, lr: float = 1e-3):
    """A timed block for :func:`alternate`: one training step (L1 loss, Adam(``lr``)) per batch
    of ``batches`` ((features, lengths, labels) triples); it returns samples/s."""

    opt = torch.optim.Adam(params, lr=lr)

    def block() -> float:
        t0 = time.perf_counter()
        for xs, ln, y in batches:
            loss = (forward(xs, ln) - y).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return B * len(batches) / (time.perf_counter() - t0)

    return block


def alternate(blocks: dict, rounds: int, swap: bool = False, say: bool = False) -> dict:
    """Run each side's block once per round, ``rounds`` + 1 rounds (round 0 warms up and is not
    counted); ``swap`` reverses the order every round; ``say`` prints each round's rates.
    Returns {side: [samples/s per counted round]}."""
    rates: dict[str, list[float]] = {k: [] for k in blocks}
    for r in range(rounds + 1):
        order = list(blocks) if not swap or r % 2 else list(blocks)[::-1]
        for k in order:
            rate = blocks[k]()
            if r:
                rates[k].append(rate)
        if r and say:
            print(
                f"  round {r}: "
                + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
                + " samples/s",
                flush=True,
            )
    return rates


def ratio_text(rates: dict, a: str, b: str) -> str:
    """ "ratio <median a / median b> (per round: ...)"."""
    med = {k: statistics.median(v) for k, v in rates.items()}
    per = ", ".join(f"{x / y:.2f}" for x, y in zip(rates[a], rates[b], strict=True))
    return f"ratio {med[a] / med[b]:.2f} (per round: {per})"


def compare_mmsa(root: str, threads: int, B: int, L, rounds: int, steps: int) -> None:
    """Ours (``mult`` through the seam) vs MMSA's MULT, alternated, 1 process, CPU."""
    from types import SimpleNamespace

    torch.set_num_threads(threads)
    print(kernel_note(), flush=True)
    Ls = L if isinstance(L, tuple) else (L, L, L)
    args = SimpleNamespace(
        use_bert=False,
        dst_feature_dim_nheads=(30, 5),
        feature_dims=DIMS,
        nlevels=5,
        attn_dropout=0.1,
        attn_dropout_a=0.0,
        attn_dropout_v=0.0,
        relu_dropout=0.1,
        embed_dropout=0.25,
        res_dropout=0.1,
        output_dropout=0.0,
        text_dropout=0.25,
        attn_mask=True,
        train_mode="regression",
        num_classes=1,
        conv1d_kernel_size_l=1,
        conv1d_kernel_size_a=1,
        conv1d_kernel_size_v=1,
    )
    torch.manual_seed(0)
    theirs = load_mmsa_mult(root)(args).train()
    ours = build_model(TrialConfig(model="mult"), DIMS).train()
    batches = make_batches("full", B, Ls, steps)
    rates = alternate(
        {
            "ours": train_block(ours, ours.parameters(), batches, B),
            "mmsa": train_block(
                lambda xs, ln: theirs(*xs)["M"].squeeze(-1), theirs.parameters(), batches, B
            ),
        },
        rounds,
    )
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in (("ours", ours), ("mmsa", theirs))}
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"MulT vs MMSA MULT, L={'/'.join(map(str, Ls))}, B={B}, {threads} thread(s), {rounds} "
        f"alternated rounds: ours {med['ours']:.1f} samples/s ({n['ours']:,} params), MMSA "
        f"{med['mmsa']:.1f} samples/s ({n['mmsa']:,} params): {ratio_text(rates, 'ours', 'mmsa')}",
        flush=True,
    )


def compare_kernels(model_name: str, B: int, L, rounds: int, steps: int) -> None:
    """Training steps of a built-in model on each CPU Linear kernel, alternated in rounds in one
    process (order swapped every round, round 0 warms up), two copies of one model on the same
    batches; and the kernel this machine's default (``auto``) picks."""
    import copy

    from tune_m3.models import layers

    print(kernel_note(), flush=True)
    chosen = layers.choose_kernel()
    torch.manual_seed(0)
    models = {"blas": build_model(TrialConfig(model=model_name), DIMS).train()}
    models["onednn"] = copy.deepcopy(models["blas"])
    batches = make_batches("full", B, L, steps)

    def on(kernel: str):
        block = train_block(models[kernel], models[kernel].parameters(), batches, B)

        def run() -> float:
            layers._ONEDNN[0] = kernel == "onednn"
            return block()

        return run

    try:
        rates = alternate({k: on(k) for k in models}, rounds, swap=True)
    finally:
        layers._ONEDNN[0] = chosen
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"{model_name}, B={B}, L={L}, {torch.get_num_threads()} thread(s), {rounds} alternated "
        f"rounds: F.linear {med['blas']:.1f} samples/s, oneDNN 1x1 conv {med['onednn']:.1f}: "
        f"oneDNN / F.linear {ratio_text(rates, 'onednn', 'blas')}; the default takes "
        f"{'oneDNN' if chosen else 'F.linear'}",
        flush=True,
    )


# the authors' M3 run (configs/m3-rnn-hard-0.2-before.yml) in tune_m3's options: hard M3, pM 0.2,
# pi 1/3 each, one draw per batch, before fusion, no rescaling; dropout 0.2 also on the attention
# matrices and Xavier-initialised attention projections, as their modules do
AUTHORS_RUN = {
    "scheme": "m3",
    "p_mask": 0.2,
    "pi_text": 1 / 3,
    "pi_audio": 1 / 3,
    "pi_vision": 1 / 3,
    "granularity": "batch",
    "rescale": False,
    "model_kwargs": {"attn_dropout": 0.2, "init": "xavier"},
}


def compare_reference(
    root: str, python: str, threads: int, B: int, L: int, rounds: int, steps: int
):
    """Ours (the baseline through the seam) vs the authors' baseline, alternated in rounds.

    The authors' side runs in its own process under ``python`` (an environment with their
    dependencies, see ``reference_step.py``), ours in this one; each block of ``steps`` steps
    runs while the other side waits, the order swaps every round, round 0 warms up. Both train
    on the same batches (``reference_step.batches``) with Adam(5e-4) and an L1 loss.
    """
    import subprocess
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reference_step import batches

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [
        python,
        str(Path(__file__).with_name("reference_step.py")),
        root,
        "--threads",
        str(threads),
        "--batch",
        str(B),
        "--seq-len",
        str(L),
        "--steps",
        str(steps),
    ]
    ref = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def reply() -> dict:
        """The reference side's next protocol line (a JSON object); other output passes to stderr."""
        while line := ref.stdout.readline():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(line)
            sys.stderr.write(f"  [authors' code] {line}")
        ref.wait()
        raise SystemExit(
            f"error: the reference side ended (exit {ref.returncode}): {' '.join(cmd)}"
        )

    info = reply()

    torch.set_num_threads(threads)
    print(kernel_note(), flush=True)
    torch.manual_seed(0)
    ours = build_model(TrialConfig(**AUTHORS_RUN), DIMS).train()
    full = torch.full((B,), L, dtype=torch.long)
    data = [
        ([torch.from_numpy(x) for x in xs], full, torch.from_numpy(y))
        for xs, y in batches(steps, B, L)
    ]

    def their_block() -> float:
        ref.stdin.write("run\n")
        ref.stdin.flush()
        return reply()["rate"]

    blocks = {
        "ours": train_block(ours, ours.parameters(), data, B, lr=5e-4),
        "authors": their_block,
    }
    try:
        rates = alternate(blocks, rounds, swap=True, say=True)
    finally:
        if ref.poll() is None:
            ref.stdin.write("quit\n")
            ref.stdin.flush()
        ref.wait()
    n_ours = sum(q.numel() for q in ours.parameters())
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"baseline vs the authors' AudioVisualTextMaskedClassifier, B={B}, L={L} (full), "
        f"{threads} thread(s), {rounds} alternated rounds of {steps} steps: ours {med['ours']:.1f} "
        f"samples/s ({n_ours:,} params), authors {med['authors']:.1f} samples/s "
        f"({info['params']:,} params, torch {info['torch']}): {ratio_text(rates, 'ours', 'authors')}",
        flush=True,
    )
    return {"ours": rates["ours"], "authors": rates["authors"], "params": [n_ours, info["params"]]}


def _list(p: argparse.ArgumentParser, flag: str, value: str, allowed) -> list[str]:
    """A comma list of ``flag`` whose items are all in ``allowed``; else argparse's error (exit 2)."""
    items = value.split(",")
    bad = [v for v in items if v not in allowed]
    if bad:
        p.error(f"{flag}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
    return items


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--procs",
        default="1",
        help="concurrent processes, e.g. 1,2 or 1,2,4,8 (slowdown is against the first value)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ...")
    p.add_argument("--lengths", default="full", help="full, random, bucketed (comma list)")
    p.add_argument("--schemes", default="none", help=",".join(SCHEMES))
    p.add_argument("--amp", default="none", help="none, bf16, fp16 (comma list)")
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        help="torch.compile the model; optional mode: default, reduce-overhead (CUDA graphs)",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", default="50", help="L, or L_T,L_A,L_V (unaligned)")
    p.add_argument("--model", default="m3_baseline", help="m3_baseline, mult or module:Class")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (the median is quoted)")
    p.add_argument("--augment-cost", action="store_true", help="also time augmentation alone")
    p.add_argument("--json", help="append one JSON line per configuration to this file")
    p.add_argument(
        "--linear-kernels",
        action="store_true",
        help="time each Linear shape of --model: F.linear vs the 1x1 channels-last conv (CPU)",
    )
    p.add_argument("--mmsa", metavar="DIR", help="compare --model mult with MMSA's MULT from DIR")
    p.add_argument(
        "--reference",
        metavar="DIR",
        help="compare --model m3_baseline with the authors' code in DIR (a checkout of "
        "efthymisgeo/multimodal-masking), alternated",
    )
    p.add_argument(
        "--reference-python",
        default=os.environ.get("TUNE_M3_REFERENCE_PYTHON", sys.executable),
        help="--reference: the Python of an environment that imports the authors' code "
        "(default: $TUNE_M3_REFERENCE_PYTHON, else this Python); see bench/reference_step.py",
    )
    p.add_argument(
        "--kernels",
        action="store_true",
        help="whole training steps of --model on F.linear vs the 1x1 conv, alternated (CPU)",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="--mmsa/--reference/--kernels: alternated rounds"
    )
    args = p.parse_args()
    schemes = _list(p, "--schemes", args.schemes, list(SCHEMES))
    length_modes = _list(p, "--lengths", args.lengths, ["full", "random", "bucketed"])
    amps = _list(p, "--amp", args.amp, ["none", "bf16", "fp16"])
    procs_list = args.procs.split(",")
    if not all(k.isdigit() and int(k) >= 1 for k in procs_list):
        p.error(f"--procs: {args.procs!r} is not a comma list of positive integers, e.g. 1,2,4")
    seq = args.seq_len.split(",")
    if len(seq) not in (1, 3) or not all(x.isdigit() and int(x) >= 1 for x in seq):
        p.error(f"--seq-len: {args.seq_len!r} is not L or L_T,L_A,L_V (positive integers)")
    seq_len = int(seq[0]) if len(seq) == 1 else tuple(map(int, seq))
    if isinstance(seq_len, tuple) and length_modes != ["full"]:
        p.error("--seq-len L_T,L_A,L_V needs --lengths full")
    if args.augment_cost and args.model != "m3_baseline":
        p.error("--augment-cost times the baseline's representation width; use --model m3_baseline")
    if args.reference:
        if args.model != "m3_baseline" or args.device != "cpu" or isinstance(seq_len, tuple):
            p.error("--reference compares --model m3_baseline on --device cpu, one --seq-len")
        if length_modes != ["full"] or schemes != ["none"] or args.mmsa or amps != ["none"]:
            p.error(
                "--reference times full-length float32 batches with the authors' M3 run on both "
                "sides; drop --lengths/--schemes/--mmsa/--amp"
            )
        compare_reference(
            args.reference,
            args.reference_python,
            args.threads,
            args.batch,
            seq_len,
            args.rounds,
            args.steps,
        )
        return
    if args.linear_kernels or args.kernels:
        if args.model not in ("m3_baseline", "mult") or args.device != "cpu":
            p.error(
                "--linear-kernels and --kernels time a built-in model's Linear layers (--model m3_baseline or mult) on --device cpu"
            )
        torch.set_num_threads(args.threads)
        if args.kernels:
            compare_kernels(args.model, args.batch, seq_len, args.rounds, args.steps)
        else:
            linear_kernels(args.model, args.batch, seq_len)
        return
    if args.mmsa:
        if args.model != "mult" or args.device != "cpu" or amps != ["none"]:
            p.error("--mmsa compares --model mult on --device cpu in float32 (no --amp)")
        compare_mmsa(args.mmsa, args.threads, args.batch, seq_len, args.rounds, args.steps)
        return
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    if not on_gpu and amps != ["none"]:
        # measured on the development CPU (AVX2, no bf16 units): a 512x512 bf16 matmul ran at
        # 1.2 GFLOP/s against 74 in float32; mixed precision is a GPU lever only
        p.error("--amp needs --device cuda (this CPU has no fast bf16/fp16 matmul)")

    torch.set_num_threads(args.threads)
    peak = matmul_rate(args.device)
    peaks = {"none": peak}  # the rate each precision's matmuls can reach on this device
    for amp in amps:
        if amp in ("bf16", "fp16"):
            dtype = torch.bfloat16 if amp == "bf16" else torch.float16
            peaks[amp] = matmul_rate(args.device, dtype=dtype)
            print(f"  2048x2048 matmul in {amp}: {peaks[amp] / 1e9:.1f} GFLOP/s", flush=True)
    name = torch.cuda.get_device_name(args.device) if on_gpu else "CPU"
    print(
        f"device {args.device} ({name}), {args.threads} thread(s): 2048x2048 matmul "
        f"{peak / 1e9:.1f} GFLOP/s (float32)"
        + ("" if on_gpu else f"; through oneDNN {onednn_rate() / 1e9:.1f} GFLOP/s"),
        flush=True,
    )
    if not on_gpu:
        print(kernel_note(), flush=True)
    base_rate: dict[str, float] = {}
    for scheme in schemes:
        for lengths in length_modes:
            for amp in amps:
                for procs in map(int, procs_list):
                    opts = {
                        "threads": args.threads,
                        "device": args.device,
                        "scheme": scheme,
                        "lengths": lengths,
                        "amp": amp,
                        "compile": args.compile,
                        "batch": args.batch,
                        "seq_len": seq_len,
                        "model": args.model,
                        "steps": args.steps,
                        "blocks": args.blocks,
                    }
                    res = run_concurrent(opts, procs)
                    per_proc = [statistics.median(r["rates"]) for r in res]
                    agg = sum(per_proc)
                    flops = res[0]["flops"] or step_flops(res[0]["padded_lengths"], args.batch)
                    # work done per second by all processes over the matmul rate they share:
                    # one GPU, or (on CPU) one rate per process with its own cores
                    capacity = peaks[amp] * (1 if on_gpu else procs)
                    frac = agg / args.batch * flops / capacity
                    key = f"{scheme}/{lengths}/{amp}"
                    scheme_txt = f"{args.model} {scheme}" if args.model != "m3_baseline" else scheme
                    base_rate.setdefault(key, per_proc[0])
                    slow = base_rate[key] / statistics.mean(per_proc)
                    line = (
                        f"{scheme_txt:<8} lengths={lengths:<8} L={args.seq_len} amp={amp:<4} "
                        f"procs={procs} "
                        f"threads={args.threads}: {agg:7.1f} samples/s"
                        + (
                            f" (per process {', '.join(f'{r:.1f}' for r in per_proc)}; "
                            f"per-trial slowdown x{slow:.2f})"
                            if procs > 1
                            else ""
                        )
                        + f"  params={res[0]['params']:,}  {flops / 1e9:.2f} GFLOP/step "
                        f"(mean padded length {statistics.mean(res[0]['padded_lengths']):.1f})  "
                        f"{100 * frac:.0f}% of the matmul rate"
                    )
                    print(line, flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            row = dict(opts, procs=procs, per_proc=per_proc, samples_per_s=agg)
                            row.update(gflop_per_step=flops / 1e9, matmul_gflops=peaks[amp] / 1e9)
                            f.write(json.dumps(row) + "\n")
        if args.augment_cost:
            aug = augment_seconds(TrialConfig(**SCHEMES[scheme]))
            step_s = args.batch / base_rate[f"{scheme}/{length_modes[0]}/{amps[0]}"]
            print(
                f"{scheme:<8} augmentation alone: {aug * 1e3:.2f} ms = "
                f"{100 * aug / step_s:.2f}% of a step",
                flush=True,
            )


if __name__ == "__main__":
    main()

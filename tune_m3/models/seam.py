"""The model seam: build any model from a config and attach M3 / perturbation to it from outside.

A model (built-in or the user's) only computes. It is constructed as ``Class(input_dims,
**kwargs)`` with ``input_dims = {"text": d_T, "audio": d_A, "vision": d_V}`` and called as
``model(mods, lengths)``: ``mods`` a dict of (B, N_l, d_l) float tensors, ``lengths`` a dict of
(B,) valid-step counts (sequences are front-padded: the valid steps are the last lengths[b]);
it returns (B,) or (B, 1) predictions.

:class:`AugmentedModel` owns everything else: the augmentation layers, their RNG state (for
checkpoints) and the place where they act. That place, ``augment_at``, is ``"input"`` (a forward
pre-hook on the model itself) or the dotted name of a submodule whose first positional argument
is the per-modality tensors: a list or tuple in (text, audio, vision) order, or a dict keyed by
those names, of (B, N_l, d_l) sequences or pooled (B, d_l) vectors. A forward pre-hook there
replaces that argument by its augmented version, in training only; the test-time diagnostics
damage the same place (:meth:`AugmentedModel.intervene`). Since the hook sees exactly the tensors
the model passes on, the law P(modality l zeroed) = pM·πl holds at the hook whatever the model.

Or ``augment_at`` maps each modality to the subnet whose OUTPUT is its representation
(``text=text_subnet,audio=...,vision=...``; :mod:`tune_m3.models.hooks`): a forward hook on
each, one draw per forward shared by the three (the joint law of M3 holds whatever order the
subnets run in), each subnet run exactly once per forward.

Lengths at a submodule's hook: a tensor with as many steps as that modality's input gets the
input's lengths (noise stays off the padding); a pooled or resampled tensor gets none.

Every mistake in a model spec raises :class:`~tune_m3.errors.UserError` naming the class and the
fix; :func:`check_model_spec` finds them all on a tiny fake batch (the search's --dry-run and
``train`` call it before anything trains).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tune_m3.augment import AugmentLayer, AugmentPipeline, ModalityMasking, ModalityPerturbation
from tune_m3.augment.perturb import resolve_sigma_scale
from tune_m3.errors import UserError
from tune_m3.models.hooks import (
    ModalityHook,
    check_calls,
    hook_shape_error,
    is_per_modality,
    modality_hooks,
    replace,
)
from tune_m3.models.layers import without_kernel_choice
from tune_m3.models.outputs import split_output
from tune_m3.names import MODALITIES
from tune_m3.streams import Streams

# built-in name -> "module:Class"
BUILTINS: dict[str, str] = {
    "m3_baseline": "tune_m3.models.m3_baseline:M3Baseline",
    "mult": "tune_m3.models.mult:MulT",
}
DEFAULT_MODEL = "m3_baseline"
MOSEI_DIMS = {"text": 300, "audio": 74, "vision": 35}
CHECK_STEPS = 50  # steps per modality of the check batch when the data's are unknown (MOSEI's)

Damage = Callable[[list[Tensor], list[Tensor | None]], list[Tensor]]


# ------------------------------------------------------------------------------ resolving a class


def _did_you_mean(name: str) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(BUILTINS), n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


def resolve_class(spec: str) -> tuple[type[nn.Module], str]:
    """(class, default augment_at) of a built-in name or ``module:Class``.

    The default ``augment_at`` is the class attribute ``augment_at`` if it has one, else "input".
    """
    if spec.startswith("mmsa:"):  # the MMSA zoo (optional extra): tune_m3/models/mmsa/
        from tune_m3.models.mmsa import mmsa_class

        cls = mmsa_class(spec)
        return cls, cls.augment_at
    if spec in BUILTINS:
        target = BUILTINS[spec]
    elif ":" in spec:
        target = spec
    else:
        raise UserError(
            f"model '{spec}': not a built-in model{_did_you_mean(spec)} and not 'module:Class'; "
            f"use one of {', '.join(BUILTINS)}, mmsa:<Model> or e.g. my_models:LateFusion"
        )
    module_name, _, cls_name = target.partition(":")
    if not module_name or not cls_name:
        raise UserError(f"model '{spec}': write it as module:Class, e.g. my_models:LateFusion")
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:  # `python -m` puts the cwd first; Ray may not
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or anything the user's module raises on import
        raise UserError(
            f"model '{spec}': cannot import module '{module_name}' ({type(err).__name__}: {err}); "
            "put it in the working directory or on PYTHONPATH"
        ) from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UserError(f"model '{spec}': module '{module_name}' has no '{cls_name}'")
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise UserError(
            f"model '{spec}': '{cls_name}' is not a torch.nn.Module subclass; "
            "give a class deriving from nn.Module"
        )
    default_at = getattr(cls, "augment_at", "input")
    if not isinstance(default_at, str):
        raise UserError(
            f"model '{spec}': {cls_name}.augment_at must be a string (a submodule's name or "
            f"'input'); got {type(default_at).__name__}"
        )
    return cls, default_at


def construct(spec: str, kwargs: Mapping[str, Any], input_dims: Mapping[str, int]) -> nn.Module:
    """``Class(input_dims, **kwargs)``; a refused kwarg or value becomes a UserError."""
    cls, _ = resolve_class(spec)
    try:
        return cls(dict(input_dims), **dict(kwargs))
    except (TypeError, ValueError) as err:
        raise UserError(
            f"model '{spec}': {cls.__name__}(input_dims, **{dict(kwargs)}) failed: {err}; "
            "change model.kwargs (or --set model.<name>=...) to what the constructor takes"
        ) from None
    except Exception as err:  # KeyError, AttributeError, ...: whatever the user's code raises
        raise UserError(
            f"model '{spec}': {cls.__name__}(input_dims={dict(input_dims)}, **{dict(kwargs)}) "
            f"raised {type(err).__name__}: {err}; fix the constructor or its kwargs (it gets "
            f"input_dims keyed {', '.join(MODALITIES)} and the model.<kw> settings)"
        ) from None


# ------------------------------------------------------------------------- the hook's argument


@dataclass
class _Packed:
    """The hook argument as a list of (B, N_l, d_l) tensors, and how to rebuild its container."""

    seq: list[Tensor]
    kind: str  # "list" | "tuple" | "dict"
    pooled: list[bool]

    def rebuild(self, seq: Sequence[Tensor]) -> Any:
        out = [s.squeeze(1) if p else s for s, p in zip(seq, self.pooled, strict=True)]
        if self.kind == "dict":
            return dict(zip(MODALITIES, out, strict=True))
        return tuple(out) if self.kind == "tuple" else out


def _shape_error(where: str, got: str) -> ValueError:
    n = len(MODALITIES)
    return ValueError(
        f"augment_at '{where}': its first positional argument must be the {n} per-modality "
        f"tensors (a list or tuple in {MODALITIES} order, or a dict keyed by those names) of "
        f"shape (B, N_l, d_l) or pooled (B, d_l); got {got}"
    )


def _pack(x: Any, where: str) -> _Packed:
    if isinstance(x, Mapping):
        if set(x) != set(MODALITIES):
            raise _shape_error(where, f"a dict with keys {sorted(map(str, x))}")
        kind, seq = "dict", [x[m] for m in MODALITIES]
    elif isinstance(x, list | tuple):
        kind, seq = ("tuple" if isinstance(x, tuple) else "list"), list(x)
    else:
        raise _shape_error(where, type(x).__name__)
    if len(seq) != len(MODALITIES) or not all(isinstance(t, Tensor) for t in seq):
        raise _shape_error(where, f"{len(seq)} items of types {[type(t).__name__ for t in seq]}")
    if any(t.dim() not in (2, 3) for t in seq) or len({t.shape[0] for t in seq}) != 1:
        raise _shape_error(where, f"shapes {[tuple(t.shape) for t in seq]}")
    pooled = [t.dim() == 2 for t in seq]
    seq = [t.unsqueeze(1) if p else t for t, p in zip(seq, pooled, strict=True)]  # (B, N_l, d_l)
    return _Packed(seq, kind, pooled)


def _select(x: Any, index: Tensor, B: int) -> Any:
    """x with every tensor of batch size B (in lists, tuples, dicts) restricted to rows ``index``."""
    if isinstance(x, Tensor):
        return x.index_select(0, index) if x.dim() > 0 and x.shape[0] == B else x
    if isinstance(x, Mapping):
        return {k: _select(v, index, B) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_select(v, index, B) for v in x)
    return x


@dataclass
class Capture:
    """What the hook saw in one forward call (for the diagnostics' shortcut)."""

    args: tuple = ()
    kwargs: dict | None = None
    lengths: list[Tensor | None] | None = None
    output: Any = None
    terminal: bool = False  # the hooked module's output was the model's output
    mods: dict[int, Tensor] = field(default_factory=dict)  # per-modality hooks: k -> (B, N, d)
    mod_lengths: dict[int, Tensor | None] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ the wrapper


def _as_dicts(mods, lengths) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    if not isinstance(mods, Mapping):
        mods = dict(zip(MODALITIES, mods, strict=True))
    if lengths is None or isinstance(lengths, Tensor):
        lengths = {
            m: (
                lengths
                if lengths is not None
                else torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
            )
            for m, x in mods.items()
        }
    return dict(mods), dict(lengths)


class AugmentedModel(nn.Module):
    """A model plus the augmentation at ``augment_at``; what training, diagnostics and benches see.

    Args:
        net: the model (``net(mods, lengths)`` -> (B,) or (B, 1)).
        augment: the layers applied at the hook in training (identity when empty).
        augment_at: ``"input"`` or the dotted name of a submodule of ``net``.
        name: the model's spec (``m3_baseline``, ``my_models:LateFusion``), for messages.
        output_key, aux_losses: the prediction and the auxiliary losses in a dict / tuple
            output (:mod:`tune_m3.models.outputs`); ``aux_loss`` holds the weighted sum of the
            last training forward (None without aux_losses, and in eval mode).

    ``forward(mods, lengths)`` returns (B,). In eval mode the augmentation is the identity.
    """

    def __init__(
        self,
        net: nn.Module,
        augment: AugmentPipeline,
        augment_at: str,
        name: str,
        output_key: str | None = None,
        aux_losses: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.net = net
        self.augment = augment
        self.output_key = output_key
        self.aux_losses = dict(aux_losses or {})
        self.aux_loss: Tensor | None = None  # Σ w_k · aux_k of the last training forward
        self.augment_at = augment_at
        self.name = name
        self._lengths: list[tuple[Tensor | None, int]] | None = None
        self._damage: Damage | None = None
        self._capture: Capture | None = None
        self._calls = 0  # hook calls in the current forward: must be exactly 1
        self._drawn: list[Any] | None = None  # per-modality hooks: this forward's shared draw
        self._mod_calls = [0] * len(MODALITIES)  # per-modality hooks: calls in this forward
        self.per_modality = is_per_modality(augment_at)
        if self.per_modality:
            self._target: list[nn.Module] = []
            for k, (hook, module) in enumerate(modality_hooks(net, augment_at, name)):
                module.register_forward_hook(self._modality_hook(k, hook))
            return
        if augment_at == "input":
            target = net
        else:
            try:
                target = net.get_submodule(augment_at)
            except AttributeError:
                names = [n for n, _ in net.named_children()]
                raise UserError(
                    f"model '{name}': augment_at '{augment_at}' names no submodule of "
                    f"{type(net).__name__}; use 'input' or one of: {', '.join(names) or '(none)'}"
                ) from None
        self._target = [target]  # a list: not registered twice as a child
        target.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        target.register_forward_hook(self._post_hook)

    # -------------------------------------------------------------------------------- hooks

    def _hook_lengths(self, seq: list[Tensor]) -> list[Tensor | None]:
        given = self._lengths or [(None, 0)] * len(seq)
        return [
            lens if lens is not None and s.shape[1] == n else None
            for s, (lens, n) in zip(seq, given, strict=True)
        ]

    def _pre_hook(self, module, args, kwargs):
        self._calls += 1
        active = self.training and len(self.augment) > 0
        if not (active or self._damage is not None or self._capture is not None):
            return None
        if not args:
            raise _shape_error(self.augment_at, "no positional argument")
        packed = _pack(args[0], self.augment_at)
        lens = self._hook_lengths(packed.seq)
        seq = packed.seq
        if active:
            seq = self.augment(seq, lens)
        if self._damage is not None:
            seq = self._damage(seq, lens)
        args = (packed.rebuild(seq), *args[1:])
        if self._capture is not None:
            self._capture.args, self._capture.kwargs, self._capture.lengths = args, kwargs, lens
        return args, kwargs

    def _post_hook(self, module, args, output):
        if self._capture is not None:
            self._capture.output = output

    def _modality_hook(self, k: int, hook: ModalityHook) -> Callable:
        """The forward hook at modality k's subnet: this forward's shared draw, applied to k."""

        def apply(module, args, output):
            self._mod_calls[k] += 1
            active = self.training and self._drawn is not None
            if not (active or self._damage is not None or self._capture is not None):
                return None
            path, x = hook.pick(output)
            B = self._batch
            if x.dim() not in (2, 3) or x.shape[0] != B:
                raise hook_shape_error(hook, x, B)
            seq = x.unsqueeze(1) if x.dim() == 2 else x  # (B, N_k, d_k)
            lens = self._hook_lengths_one(k, seq.shape[1])
            if active:
                seq = self.augment.apply_one(self._drawn, k, seq, lens)
            if self._damage is not None:  # a damage acts on its own modality's slot only
                seq = self._damage([seq] * len(MODALITIES), [lens] * len(MODALITIES))[k]
            if self._capture is not None:
                self._capture.mods[k], self._capture.mod_lengths[k] = seq, lens
            return replace(output, path, seq.squeeze(1) if x.dim() == 2 else seq)

        return apply

    def _hook_lengths_one(self, k: int, steps: int) -> Tensor | None:
        lens, n = (self._lengths or [(None, 0)] * len(MODALITIES))[k]
        return lens if lens is not None and steps == n else None

    # ------------------------------------------------------------------------------ forward

    def forward(self, mods, lengths=None) -> Tensor:
        """mods {l: (B, N_l, d_l)}, lengths {l: (B,)} -> predictions (B,).

        For scripts and benches, ``mods`` may also be a sequence in (text, audio, vision) order
        and ``lengths`` one (B,) tensor for all modalities, or None (every step valid); the
        model always receives the two dicts.
        """
        mods, lengths = _as_dicts(mods, lengths)
        B = mods[MODALITIES[0]].shape[0]
        # (lengths, steps) of each modality's input: the hook reuses lengths where steps match
        self._lengths = [
            (lengths.get(m) if lengths else None, mods[m].shape[1] if m in mods else 0)
            for m in MODALITIES
        ]
        self._calls, self._mod_calls, self._batch = 0, [0] * len(MODALITIES), B
        if self.per_modality and self.training and len(self.augment) > 0:
            steps = [mods[m].shape[1] for m in MODALITIES]
            self._drawn = self.augment.draw(B, steps, mods[MODALITIES[0]].device)
        try:
            out = self.net(mods, lengths)
        finally:
            self._lengths, self._drawn = None, None
        if self.per_modality:
            check_calls(self.name, self.augment_at, self._mod_calls)
        elif self._calls != 1:
            raise ValueError(
                f"model '{self.name}': augment_at '{self.augment_at}' ran {self._calls} times in "
                "one forward; it must run exactly once, on all modalities together (hook the "
                "module that receives them, or use 'input')"
            )
        if self._capture is not None:  # the shortcut needs the hooked output to be the pred
            self._capture.terminal = self._capture.output is out and isinstance(out, Tensor)
        return self._prediction(out, B)

    def _prediction(self, out: Any, B: int) -> Tensor:
        """The (B,) predictions in ``out``; keeps the weighted auxiliary losses (training)."""
        pred, self.aux_loss = split_output(
            out, self.output_key, self.aux_losses, self.name, self.training
        )
        if not isinstance(pred, Tensor) or tuple(pred.shape) not in ((B,), (B, 1)):
            got = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
            raise ValueError(
                f"model '{self.name}' returned {got} for a batch of {B}; return one prediction "
                f"per sample, shape ({B},) or ({B}, 1)"
            )
        return pred.reshape(B)

    # ----------------------------------------------------------------- diagnostics, checkpoints

    @contextlib.contextmanager
    def capture(self) -> Iterator[Capture]:
        """Record the hook's (augmented) arguments and output during the calls inside."""
        self._capture = cap = Capture()
        try:
            yield cap
        finally:
            self._capture = None

    @contextlib.contextmanager
    def intervene(self, damage: Damage) -> Iterator[None]:
        """Apply ``damage(seq, lengths) -> seq`` at the hook (in any mode) during the calls inside."""
        self._damage = damage
        try:
            yield
        finally:
            self._damage = None

    @torch.no_grad()
    def hook_inputs(self, mods, lengths=None) -> tuple[list[Tensor], list[Tensor | None]]:
        """The per-modality tensors arriving at ``augment_at`` (as the hook sees them in this
        mode) and their valid lengths (None where every step is valid or the tensor is pooled).
        """
        with self.capture() as cap:
            self(mods, lengths)
        if self.per_modality:
            n = len(MODALITIES)
            return [cap.mods[k] for k in range(n)], [cap.mod_lengths.get(k) for k in range(n)]
        return _pack(cap.args[0], self.augment_at).seq, list(cap.lengths or [])

    def rerun_from_hook(self, cap: Capture, index: Tensor, damage: Damage) -> Tensor:
        """Predictions (b',) for rows ``index`` of a captured batch, damaged at the hook.

        Only when ``cap.terminal`` (the hooked module's output is the model's output): the stages
        before the hook are not run again, which is the diagnostics' shortcut.
        """
        B = _pack(cap.args[0], self.augment_at).seq[0].shape[0]
        args = _select(cap.args, index, B)
        kwargs = _select(cap.kwargs or {}, index, B)
        lens = [None if x is None else x.index_select(0, index) for x in cap.lengths or []]
        packed = _pack(args[0], self.augment_at)
        args = (packed.rebuild(damage(packed.seq, lens)), *args[1:])
        saved, self._capture = self._capture, None
        try:
            out = self._target[0](*args, **kwargs)  # the pre-hook is idle: nothing active
        finally:
            self._capture = saved
        return out.reshape(len(index))

    def generator_state(self) -> list[Any]:
        """The augmentation layers' RNG states (torch.save-able), for checkpoints."""
        return self.augment.generator_state()

    def set_generator_state(self, state: Sequence[Any]) -> None:
        self.augment.set_generator_state(state)


# ------------------------------------------------------------------------------------- building


def augment_layers(cfg, augment_at: str = "input") -> AugmentPipeline:
    """Masking then perturbation, as configured in a TrialConfig (empty: the identity).

    Each layer draws from its own stream of :class:`~tune_m3.streams.Streams`. A
    ``sigma_scale: auto`` is resolved for the hook ``augment_at`` (:func:`resolve_sigma_scale`).
    """
    streams = Streams.of(cfg.seed)
    layers: list[AugmentLayer] = []
    if cfg.scheme != "none" and cfg.p_mask > 0:
        layers.append(
            ModalityMasking(
                cfg.scheme,
                p_mask=cfg.p_mask,
                modal_probs=cfg.modal_probs,
                granularity=cfg.granularity,
                p_feature=cfg.p_feature,
                rescale=cfg.rescale,
                seed=streams.masking,
                soft_mode=cfg.soft_m3_mode,
            )
        )
    if cfg.p_missing > 0 or cfg.p_noise > 0:
        layers.append(
            ModalityPerturbation(
                p_missing=cfg.p_missing,
                p_noise=cfg.p_noise,
                sigma=cfg.sigma,
                target=MODALITIES.index(cfg.perturb_target),
                seed=streams.perturbation,
                noise_kind=cfg.noise_kind,
                sigma_scale=resolve_sigma_scale(
                    cfg.sigma_scale, cfg.noise_kind, augment_at == "input"
                ),
                count=cfg.perturb_count,
            )
        )
    return AugmentPipeline(layers)


def dims_dict(input_dims: Mapping[str, int] | Sequence[int]) -> dict[str, int]:
    if isinstance(input_dims, Mapping):
        return {m: int(input_dims[m]) for m in MODALITIES}
    return {m: int(d) for m, d in zip(MODALITIES, input_dims, strict=True)}


def build_model(cfg, input_dims: Mapping[str, int] | Sequence[int]) -> AugmentedModel:
    """The configured model (``cfg.model``, ``cfg.model_kwargs``) wrapped with its augmentation.

    ``output_key`` and ``aux_losses`` not set in ``cfg`` come from the model when it declares
    them (a class attribute ``output_key``; an attribute ``aux_losses``, {key: weight}, which
    may depend on the constructor's arguments: MMSA's MFM).

    Parameters are initialised from ``torch.manual_seed`` of the trial's ``init`` stream (its
    ``seed``; :class:`~tune_m3.streams.Streams`).
    """
    cls, default_at = resolve_class(cfg.model)
    torch.manual_seed(Streams.of(cfg.seed).init)
    net = construct(cfg.model, cfg.model_kwargs, dims_dict(input_dims))
    at = cfg.augment_at or default_at
    key = cfg.output_key or getattr(cls, "output_key", None)  # a class may declare its own
    aux = cfg.aux_losses or getattr(net, "aux_losses", None)  # a model its default weights
    return AugmentedModel(net, augment_layers(cfg, at), at, cfg.model, key, aux)


def model_defaults(cfg, input_dims: Mapping[str, int] | Sequence[int]) -> dict[str, str]:
    """What the model itself decides where ``cfg`` leaves it unset, as MLflow params: the default
    ``augment_at`` (its class attribute, else "input"), ``output_key`` (a class attribute) and
    ``aux_losses`` (a classmethod ``default_aux_losses(input_dims, **kwargs)``: MMSA's MFM).
    No model is built; what a model sets only in its constructor is not seen here."""
    cls, default_at = resolve_class(cfg.model)
    out = {}
    if cfg.augment_at is None:
        out["augment_at"] = default_at
    if cfg.output_key is None and getattr(cls, "output_key", None):
        out["output_key"] = cls.output_key
    aux = _default_aux(cls, cfg, input_dims)
    if not cfg.aux_losses and aux:
        out["aux_losses"] = ",".join(f"{k}={w:g}" for k, w in sorted(aux.items()))
    return out


def _default_aux(cls, cfg, input_dims) -> dict[str, float] | None:
    fn = getattr(cls, "default_aux_losses", None)
    return None if fn is None else fn(dims_dict(input_dims), **dict(cfg.model_kwargs))


def fake_batch(
    input_dims: Mapping[str, int],
    steps: Mapping[str, int] | None = None,
    B: int = 4,
    shortest: Mapping[str, int] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A tiny front-padded batch: ({l: (B, N_l, d_l)}, {l: (B,)}); sample 1 has ``shortest[l]``
    valid steps (default: one step short)."""
    g = torch.Generator().manual_seed(0)
    steps = steps or {m: CHECK_STEPS for m in MODALITIES}
    mods, lengths = {}, {}
    for m in MODALITIES:
        n = steps[m]
        lens = torch.full((B,), n, dtype=torch.long)
        lens[1] = min(n, max(1, shortest[m] if shortest else n - 1))
        x = torch.randn(B, n, input_dims[m], generator=g)
        x[1, : n - int(lens[1])] = 0.0
        mods[m], lengths[m] = x, lens
    return mods, lengths


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the block, then as before.

    For a tiny batch a thread pool's start (and, on a loaded machine, its waits) cost more than
    the work: the baseline's check took 0.04 s on one thread, 0.4-1.1 s on two busy cores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_model_spec(
    cfg,
    input_dims: Mapping[str, int] | Sequence[int] | None = None,
    steps: Mapping[str, int] | None = None,
    shortest: Mapping[str, int] | None = None,
) -> None:
    """Build ``cfg``'s model on CPU and run one training-mode forward on a tiny fake batch.

    Raises UserError (naming the class and the fix) for every mistake in a model spec: not
    importable, not an nn.Module, any exception of its constructor or forward, ``augment_at``
    naming no submodule, a hook argument or an output of the wrong shape. Touches no global RNG
    state. ``input_dims`` defaults to MOSEI's; ``steps`` ({l: N_l}, the data's step counts
    when known: training and ``--dry-run`` pass them) to CHECK_STEPS per modality;
    ``shortest`` ({l: steps}) is the valid length of one sample (the data's shortest clip).
    """
    dims = dims_dict(input_dims or MOSEI_DIMS)
    with torch.random.fork_rng(devices=[]), one_thread(), without_kernel_choice():
        model = build_model(cfg, dims).train()
        # every hook path runs, even with no augmentation configured
        model.augment = augment_layers(
            cfg.model_copy(
                update={"scheme": "m3", "p_mask": 0.5, "p_missing": 0.25, "p_noise": 0.25}
            ),
            model.augment_at,
        )
        for layer in model.augment.layers:  # training measures the RMS on real data
            if isinstance(layer, ModalityPerturbation) and layer.sigma_scale == "rms":
                layer.set_rms(1.0)
        mods, lengths = fake_batch(dims, steps, shortest=shortest)
        try:
            with torch.no_grad():
                model(mods, lengths)
        except UserError:
            raise
        except Exception as err:
            shape = ", ".join(f"{m} {tuple(x.shape)}" for m, x in mods.items())
            raise UserError(
                f"model '{cfg.model}': {type(model.net).__name__}.forward on a check batch "
                f"({shape}; dicts of (B, N_l, d_l) tensors and (B,) lengths) raised "
                f"{type(err).__name__}: {err}; fix the model, its kwargs or augment_at so it "
                "takes batches of the data's shape"
            ) from None

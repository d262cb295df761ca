"""Per-modality hooks: M3 / perturbation at the OUTPUT of each modality's own subnet.

``augment_at`` may map every modality to the submodule whose output is that modality's
representation (the fusion being code inside the model's ``forward()``)::

    augment_at: {text: text_subnet, audio: audio_subnet, vision: video_subnet}

held in a config as the canonical string ``"text=text_subnet,audio=audio_subnet,vision=video_subnet"``
(:func:`canonical_augment_at`; ``--set augment_at=...`` takes either form).

Which tensor of an output: a tensor output is itself. A tuple, list or dict output is searched
one level deep: the only tensor among its items is taken (an LSTM's ``(out, (h, c))`` gives
``out``; a GRU's ``(out, h)`` has two, so it is ambiguous). Name it with an index path after
the module's name: ``text_subnet[0]``, ``lstm[1][0]`` (the LSTM's h), ``enc[pooled]`` (dict key).
The tensor must be batch first: (B, N, d) or pooled (B, d).

The law: one draw per forward pass, shared by the three hooks (:meth:`AugmentLayer.draw` at the
start of the model's forward with the inputs' step counts, :meth:`AugmentLayer.apply_one` at
each modality's hook), so the joint law of M3 holds whatever order the model calls its subnets
in: per unit, at most the drawn modality is zeroed, P = pM·πl, never two. Each hooked subnet
must run exactly once per forward (a subnet run twice or not at all is an error at the check).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from tune_m3.errors import UserError
from tune_m3.names import MODALITIES

__all__ = [
    "ModalityHook",
    "canonical_augment_at",
    "is_per_modality",
    "mapping_of",
    "modality_hooks",
]

_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?P<path>(\[[^\[\]]+\])*)$")


def is_per_modality(augment_at: str | None) -> bool:
    """True for the canonical per-modality form (``text=...,audio=...,vision=...``)."""
    return augment_at is not None and "=" in augment_at


def mapping_of(value: str | Mapping[str, Any]) -> dict[str, str]:
    """{modality: "submodule[index]"} of a per-modality ``augment_at`` (dict or canonical form)."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    pairs = [p.partition("=") for p in value.split(",")]
    return {k.strip(): v.strip() for k, _, v in pairs}


def canonical_augment_at(value: Any) -> Any:
    """A dict (or ``l=name,...`` string) -> ``"text=a,audio=b,vision=c"``; others as given.

    Raises ValueError naming a modality missing from the mapping or an unknown key.
    """
    if not isinstance(value, Mapping) and not (isinstance(value, str) and "=" in value):
        return value
    mapping = mapping_of(value)
    missing = [m for m in MODALITIES if not mapping.get(m)]
    unknown = sorted(set(mapping) - set(MODALITIES))
    if missing or unknown:
        raise ValueError(
            "augment_at: a per-modality mapping names each of "
            f"{', '.join(MODALITIES)} once (the submodule whose output is that modality's "
            f"representation); missing {missing}, unknown {unknown}"
        )
    for m in MODALITIES:
        if not _SPEC.match(mapping[m]):
            raise ValueError(
                f"augment_at: {m}: '{mapping[m]}' is not a submodule name with an optional "
                "index path, e.g. text_subnet or text_subnet[0]"
            )
    return ",".join(f"{m}={mapping[m]}" for m in MODALITIES)


def _index(item: str) -> int | str:
    item = item.strip().strip("'\"")
    return int(item) if re.fullmatch(r"-?\d+", item) else item


@dataclass(frozen=True)
class ModalityHook:
    """One modality's hook: the submodule's dotted name and the index path into its output."""

    modality: str
    module: str
    path: tuple[int | str, ...]
    spec: str  # as written, for messages

    def pick(self, output: Any) -> tuple[tuple[int | str, ...], Tensor]:
        """(index path, tensor) of the representation in ``output``; ValueError if none/ambiguous."""
        path = self.path or _only_tensor(output, self)
        x = output
        for i in path:
            try:
                x = x[i]
            except (IndexError, KeyError, TypeError):
                raise _no_tensor(self, output, f"it has no item [{i}]") from None
        if not isinstance(x, Tensor):
            raise _no_tensor(self, output, f"[{']['.join(map(str, path))}] is a {type(x).__name__}")
        return path, x


def _describe(output: Any) -> str:
    if isinstance(output, Tensor):
        return f"Tensor{tuple(output.shape)}"
    if isinstance(output, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in output.items()) + "}"
    if isinstance(output, list | tuple):
        return f"{type(output).__name__}(" + ", ".join(_describe(v) for v in output) + ")"
    return type(output).__name__


def _no_tensor(hook: ModalityHook, output: Any, why: str) -> ValueError:
    return ValueError(
        f"augment_at {hook.modality}: '{hook.spec}' output {_describe(output)}: {why}; name the "
        f"tensor that is the {hook.modality} representation with an index, e.g. "
        f"{hook.module}[0] (docs/models.md, per-modality hooks)"
    )


def _only_tensor(output: Any, hook: ModalityHook) -> tuple[int | str, ...]:
    if isinstance(output, Tensor):
        return ()
    if isinstance(output, Mapping):
        keys = [k for k, v in output.items() if isinstance(v, Tensor)]
    elif isinstance(output, list | tuple):
        keys = [i for i, v in enumerate(output) if isinstance(v, Tensor)]
    else:
        raise _no_tensor(hook, output, "no tensor to pick")
    if len(keys) != 1:
        why = "no tensor among its items" if not keys else f"{len(keys)} tensors (ambiguous)"
        raise _no_tensor(hook, output, why)
    return (keys[0],)


def replace(output: Any, path: tuple[int | str, ...], x: Tensor) -> Any:
    """``output`` with the item at ``path`` replaced by ``x`` (containers rebuilt, not mutated)."""
    if not path:
        return x
    head, rest = path[0], path[1:]
    if isinstance(output, Mapping):
        return {**output, head: replace(output[head], rest, x)}
    items = list(output)
    items[head] = replace(items[head], rest, x)
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # a namedtuple
        return type(output)(*items)
    return type(output)(items) if isinstance(output, tuple) else items


def _names_hint(net: nn.Module, name: str) -> str:
    names = [n for n, _ in net.named_modules() if n]
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    mean = f" (did you mean '{near[0]}'?)" if near else ""
    return f"{mean}; submodules: {', '.join(names[:20]) or '(none)'}"


def modality_hooks(
    net: nn.Module, augment_at: str, model: str
) -> list[tuple[ModalityHook, nn.Module]]:
    """The per-modality hooks of ``augment_at`` (canonical form) on ``net``, in MODALITIES order.

    UserError for a name that is no submodule (with a did-you-mean) or one submodule named
    for two modalities.
    """
    out = []
    for m, spec in mapping_of(augment_at).items():
        match = _SPEC.match(spec)
        assert match is not None  # canonical_augment_at checked it
        name = match["name"]
        path = tuple(_index(i) for i in re.findall(r"\[([^\[\]]+)\]", match["path"]))
        try:
            module = net.get_submodule(name)
        except AttributeError:
            raise UserError(
                f"model '{model}': augment_at {m}: '{name}' names no submodule of "
                f"{type(net).__name__}{_names_hint(net, name)}"
            ) from None
        out.append((ModalityHook(m, name, path, spec), module))
    modules = [id(mod) for _, mod in out]
    if len(set(modules)) != len(modules):
        raise UserError(
            f"model '{model}': augment_at '{augment_at}' names one submodule for two modalities; "
            "each modality needs its own subnet (or hook one module that receives all of them)"
        )
    return out


def hook_shape_error(hook: ModalityHook, x: Tensor, batch: int) -> ValueError:
    return ValueError(
        f"augment_at {hook.modality}: '{hook.spec}' gave a tensor of shape {tuple(x.shape)} for "
        f"a batch of {batch}; a representation is batch first, (B, N, d) or pooled (B, d) "
        "(an LSTM/GRU needs batch_first=True, or name another item of its output)"
    )


def check_calls(model: str, augment_at: str, calls: list[int]) -> None:
    """ValueError unless every modality's hooked subnet ran exactly once in this forward."""
    bad = [(m, n) for m, n in zip(MODALITIES, calls, strict=True) if n != 1]
    if bad:
        names = mapping_of(augment_at)
        said = "; ".join(f"{m}: '{names[m]}' ran {n} times" for m, n in bad)
        raise ValueError(
            f"model '{model}': augment_at {said} in one forward; each modality's subnet must run "
            "exactly once per forward (its output is that modality's representation), or the "
            "shared draw would not give M3's law"
        )

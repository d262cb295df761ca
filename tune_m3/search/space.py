"""Search-space files (``search_spaces/*.yaml``): schema, validation, expansion.

A space file says what to train (dataset, fixed settings), what to search (distributions or a
grid), how (Optuna TPE or grid; ASHA or FIFO) and with what resources. Schema (every key is
validated; unknown keys get a did-you-mean)::

    description: free text
    dataset:                         # a name in the store ...
      name: synth_mosei_demo
      synthetic:                     # ... optionally built on first use (synthetic data only)
        like: mosei                  #     shape to imitate: mosei | mosi
        scale: 0.04                  #     fraction of the real split sizes
        seed: 0
        unaligned: false             #     true: audio/vision have more steps than text
    model:                           # optional; a bare name also works: `model: mult`
      class: m3_baseline             #   m3_baseline (default) | mult | module:Class
      kwargs: {hidden: 64}           #   constructor kwargs (only for this class)
      augment_at: fusion             #   input | a submodule's dotted name (default: the model's)
                                     #   | {text: a, audio: b, vision: c} (per-modality subnets)
    fixed:                           # TrialConfig fields held fixed (see tune_m3/config.py)
      max_epochs: 30
    search:                          # TrialConfig fields, model.<kw> or audio_share searched
      model.hidden: {choice: [32, 64, 128]}
      p_mask: {uniform: [0.05, 0.5]}           # uniform | loguniform | quniform: [lo, hi, q]
      lr: {loguniform: [1.0e-4, 2.0e-3]}
      scheme: {choice: [m3, soft_m3]}          # choice: categorical
      pi_text: {grid: [0.33, 0.6]}             # grid: only with algorithm grid
    simplex:                         # how pi_audio and pi_vision follow from pi_text
      audio_share: 0.5               # pi_audio = (1 - pi_text) * share, pi_vision = the rest;
                                     # 0.5 is the papers' grid; search it under `search:`
    variants:                        # optional named bundles of fixed values (grid rows),
      baseline: {scheme: none}       # crossed with the grid and the seeds
      m3: {scheme: m3, p_mask: 0.2}
    seeds: [0, 1, 2]                 # training seeds; each configuration is repeated per seed
    confirm: {top_k: 3, seeds: [3, 4, 5]}   # after the search: re-train the top 3 once per seed
                                     # (full training, no ASHA); the winner is the best mean;
                                     # seeds the search did not train with (docs/search.md)
    objectives:                      # instead of metric/mode: Optuna multi-objective TPE;
      - {metric: val_mae, mode: min} #   ASHA prunes on the first only; the diag_val_* metrics
      - {metric: diag_val_text_missing_30_mae_drop, mode: min}   # are computed every epoch
    reference: [0.6, 0.2]            # hypervolume reference point (default: the worst trial)
    algorithm: {type: optuna, seed: 0}         # or {type: grid}
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}   # or {type: fifo}
    metric: val_mae                  # any per-epoch metric; mode: min | max
    mode: min
    num_samples: 40                  # Optuna trials (grid: ignored, the grid decides)
    max_concurrent: 2
    resources: {cpu: 1, gpu: 0}      # per trial; gpu may be fractional (0.25 = 4 per GPU)

Why this shape: πT, πA, πV must sum to 1, so a space never searches pi_audio/pi_vision
directly; it searches pi_text and (optionally) the audio share of the rest, and every sample is
valid by construction. With Optuna, ``seeds`` must hold one seed (TPE learns from one value per
configuration); repeats over seeds are what grids are for, with FIFO, because early-stopped
trials would bias the means.
"""

from __future__ import annotations

import itertools
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tune_m3 import safe_yaml
from tune_m3.config import (
    MODEL_PREFIX,
    TrialConfig,
    did_you_mean,
    field_names,
    format_validation_error,
    is_model_key,
    make_config,
)
from tune_m3.errors import UserError
from tune_m3.names import epoch_metrics, is_epoch_metric

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
PROBABILITY_KEYS = {
    "p_mask",
    "pi_text",
    "pi_audio",
    "pi_vision",
    "p_feature",
    "p_missing",
    "p_noise",
    "audio_share",
}
POINT = "_point"  # Ray config key of a confirm trial's configuration (see confirm.py)
DERIVED = {"pi_audio", "pi_vision"}  # set from pi_text and audio_share, never searched directly
DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "choice", "grid")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynthSpec(_Strict):
    like: Literal["mosei", "mosi"] = "mosei"
    scale: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    unaligned: bool = False  # audio/vision with more steps than text (docs/data.md)


class DatasetSpec(_Strict):
    name: str
    synthetic: SynthSpec | None = None


class ModelSpec(_Strict):
    """The ``model:`` block (see docs/models.md); a bare string is ``{class: <string>}``."""

    class_: str = Field("m3_baseline", alias="class", min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    augment_at: str | dict[str, str] | None = None  # a per-modality mapping: docs/models.md

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def values(self) -> dict[str, Any]:
        """The block as TrialConfig values (model, model.<kw>, augment_at)."""
        out: dict[str, Any] = {"model": self.class_}
        out.update({f"{MODEL_PREFIX}{k}": v for k, v in self.kwargs.items()})
        if self.augment_at is not None:
            out["augment_at"] = self.augment_at
        return out


class Dist(_Strict):
    """One searched parameter: exactly one of the distribution keys."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    quniform: tuple[float, float, float] | None = None
    choice: list[Any] | None = None
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Dist:
        given = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one distribution of {list(DISTRIBUTIONS)} (got {given or 'none'})"
            )
        kind = given[0]
        val = getattr(self, kind)
        if kind in ("uniform", "loguniform", "quniform") and not val[0] < val[1]:
            raise ValueError(f"{kind}: low must be < high (got {list(val)})")
        if kind == "loguniform" and val[0] <= 0:
            raise ValueError(f"loguniform: low must be > 0 (got {val[0]})")
        if kind in ("choice", "grid") and not val:
            raise ValueError(f"{kind}: empty list of values")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)

    @property
    def args(self) -> Any:
        return getattr(self, self.kind)

    def values_range(self) -> list[float]:
        """Numbers this distribution can produce at its extremes (for range checks)."""
        a = self.args
        if self.kind in ("choice", "grid"):
            return [v for v in a if isinstance(v, int | float) and not isinstance(v, bool)]
        return [a[0], a[1]]


class Algorithm(_Strict):
    type: Literal["optuna", "grid"] = "optuna"
    seed: int = 0


class Scheduler(_Strict):
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2, gt=1)


class Objective(_Strict):
    metric: str
    mode: Literal["min", "max"] = "min"


def _distinct_seeds(seeds: list[int]) -> list[int]:
    """A repeated seed repeats a run bit for bit (on CPU): a std of 0 that means nothing."""
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"seed(s) {twice} appear more than once; give distinct seeds")
    return seeds


class ConfirmSpec(_Strict):
    """Re-train the top-k configurations once per seed after the search (no ASHA)."""

    top_k: int = Field(3, ge=1)
    seeds: list[int] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        return _distinct_seeds(v)


class Resources(_Strict):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)


class SearchSpace(_Strict):
    description: str = ""
    dataset: DatasetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    fixed: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Dist] = Field(default_factory=dict)
    simplex: dict[str, Any] = Field(default_factory=lambda: {"audio_share": 0.5})
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    algorithm: Algorithm = Field(default_factory=Algorithm)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    metric: str = "val_mae"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(10, ge=1)
    max_concurrent: int = Field(2, ge=1)
    resources: Resources = Field(default_factory=Resources)
    confirm: ConfirmSpec | None = None
    objectives: list[Objective] | None = None
    reference: list[float] | None = None  # hypervolume reference point (default: worst trial)

    # the space's name (its file's stem) and its file; set by load_space, never by the file
    name: str = ""
    path: str = ""

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return {"class": v} if isinstance(v, str) else v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        return _distinct_seeds(v)

    @field_validator("simplex")
    @classmethod
    def _simplex(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = set(v) - {"audio_share"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}; simplex takes only audio_share")
        share = v.get("audio_share", 0.5)
        if not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"audio_share must be a number in [0, 1] (got {share!r})")
        return {"audio_share": float(share)}

    @model_validator(mode="after")
    def _semantics(self) -> SearchSpace:
        """A space checks itself when it is built (keys, probabilities, algorithm, metric,
        types, every corner a valid TrialConfig); building its models (torch) is
        :func:`check_space_models`, run by :func:`load_space` or after cheaper checks."""
        _check_semantics(self)
        return self

    # --------------------------------------------------------------------------- expansion

    def searched_keys(self) -> list[str]:
        """The settings that differ between trials, in the order run names and tables show
        them: a grid's variant, the searched keys, and the seed when a grid repeats seeds."""
        keys = list(self.search)
        if self.algorithm.type == "grid":
            variant = ["variant"] if self.variants else []
            keys = variant + keys + (["seed"] if len(self.seeds) > 1 else [])
        return keys

    def grid_axes(self) -> dict[str, list[Any]]:
        axes: dict[str, list[Any]] = {}
        if self.variants:
            axes["variant"] = list(self.variants)
        axes.update({k: d.grid for k, d in self.search.items() if d.kind == "grid"})
        axes["seed"] = list(self.seeds)
        return axes

    def grid_points(self) -> list[dict[str, Any]]:
        """Every trial of a grid space, in order: variant x grid params x seeds."""
        axes = self.grid_axes()
        return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]

    def training_seeds(self) -> set[int] | None:
        """The training seeds the search stage's trials can use (None: a range not listed).

        A searched ``seed`` wins over the grid's seed axis, which wins over ``fixed: {seed}``,
        which wins over the single entry of ``seeds`` (the order of :meth:`trial_values`).
        """
        if "seed" in self.search:
            d = self.search["seed"]
            return {int(v) for v in d.args} if d.kind in ("choice", "grid") else None
        if self.algorithm.type == "grid" or "seed" not in self.fixed:
            return set(self.seeds)
        return {int(self.fixed["seed"])}

    def num_trials(self) -> int:
        return len(self.grid_points()) if self.algorithm.type == "grid" else self.num_samples

    def trial_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Sampled/grid params -> the values of a TrialConfig (fixed + variant + params + simplex)."""
        values = dict(self.fixed)
        p = dict(params)
        # a confirm-stage trial carries its whole configuration as one grid value, "_point"
        p.update(p.pop(POINT, None) or {})
        p = {k: v for k, v in p.items() if not k.startswith("_")}  # tune_m3's own bookkeeping
        variant = p.pop("variant", None)
        if variant is not None:
            values.update(self.variants[variant])
        share = p.pop("audio_share", self.simplex["audio_share"])
        values.update(p)
        # the model block's kwargs belong to its class: they apply unless another model was
        # chosen (--set model=..., a grid axis over model)
        block = self.model.values()
        if values.get("model", block["model"]) == block["model"]:
            values = {**block, **values}
        values["dataset"] = self.dataset.name
        diag_objectives = [o.metric for o in self.objectives or [] if o.metric.startswith("diag_")]
        if diag_objectives:  # computed on the validation split every epoch
            values.setdefault("val_diagnostics", tuple(diag_objectives))
        if len(self.seeds) == 1 and "seed" not in params:
            values.setdefault("seed", self.seeds[0])
        if "pi_audio" not in values and "pi_vision" not in values:
            rest = 1.0 - float(values.get("pi_text", 1 / 3))
            values["pi_audio"] = rest * share
            values["pi_vision"] = rest - rest * share
        return values

    def trial_variant(self, params: dict[str, Any]) -> str | None:
        """The grid row's variant name of a trial (also inside a confirm trial's point)."""
        return params.get("variant", (params.get(POINT) or {}).get("variant"))

    def example_configs(self) -> list[TrialConfig]:
        """Configs at the corners of the space, to validate it before anything runs."""
        if self.algorithm.type == "grid":
            points = self.grid_points()
        else:
            corners = []
            for k, d in self.search.items():
                if d.kind in ("choice", "grid"):
                    corners.append([(k, v) for v in d.args])
                else:
                    corners.append([(k, d.args[0]), (k, d.args[1])])
            points = [dict(c) for c in itertools.product(*corners)][:256] or [{}]
        where = f"space '{self.name}'"
        return [make_config(self.trial_values(p), where=where) for p in points]


def _check_semantics(space: SearchSpace) -> None:
    """Everything the field declarations cannot say; run once, when the space is built."""
    where = f"{space.path}"
    _check_keys(space, where)
    _check_probabilities(space, where)
    if space.algorithm.type == "grid":
        _check_grid(space, where)
    else:
        _check_optuna(space, where)
    _check_objectives(space, where)
    _check_metric(space.metric, where)
    _check_types(space, where)
    space.example_configs()  # every corner must be a valid TrialConfig (pi sum, ...)


def _check_keys(space: SearchSpace, where: str) -> None:
    """Every key of fixed, search and the variants is a TrialConfig field (or model.<kw>)."""
    known = field_names()
    for section, keys in (("fixed", space.fixed), ("search", space.search)):
        for k in keys:
            if k not in known and k != "audio_share" and not is_model_key(k):
                raise UserError(
                    f"{where}: {section}.{k}: unknown parameter{did_you_mean(k, known + ['audio_share'])}"
                )
            if k in DERIVED:
                raise UserError(
                    f"{where}: {section}.{k}: pi_audio and pi_vision follow from pi_text and "
                    "simplex.audio_share (so that the three sum to 1); set those instead"
                )
    for name, bundle in space.variants.items():
        for k in bundle:
            if k not in known and not is_model_key(k):
                raise UserError(
                    f"{where}: variants.{name}.{k}: unknown parameter{did_you_mean(k, known)}"
                )


def _check_probabilities(space: SearchSpace, where: str) -> None:
    """Searched and fixed probabilities lie in [0, 1]."""
    for k, d in space.search.items():
        if k in PROBABILITY_KEYS:
            bad = [v for v in d.values_range() if not 0 <= v <= 1]
            if bad:
                raise UserError(
                    f"{where}: search.{k}: {k} is a probability; {bad[0]} is outside [0, 1]"
                )
    for k, v in space.fixed.items():
        if k in PROBABILITY_KEYS and isinstance(v, int | float) and not 0 <= v <= 1:
            raise UserError(f"{where}: fixed.{k}: {k} is a probability; {v} is outside [0, 1]")


def _check_grid(space: SearchSpace, where: str) -> None:
    """A grid: grid values only, full trainings (no ASHA)."""
    non_grid = [k for k, d in space.search.items() if d.kind != "grid"]
    if non_grid:
        raise UserError(
            f"{where}: search.{non_grid[0]}: algorithm grid needs grid: [values] for every searched parameter"
        )
    if space.scheduler.type == "asha":
        raise UserError(
            f"{where}: scheduler: a grid reproduces a table from full trainings; ASHA would stop "
            "trials early and bias the means. Use scheduler: {type: fifo}"
        )


def _check_optuna(space: SearchSpace, where: str) -> None:
    """An Optuna search: no grid values or variants, one seed, something searched."""
    grids = [k for k, d in space.search.items() if d.kind == "grid"]
    if grids:
        raise UserError(
            f"{where}: search.{grids[0]}: grid values need algorithm: {{type: grid}}; with optuna use choice: [...]"
        )
    if space.variants:
        raise UserError(f"{where}: variants: need algorithm: {{type: grid}}")
    if len(space.seeds) > 1:
        raise UserError(
            f"{where}: seeds: Optuna searches take one seed (got {len(space.seeds)}); repeat over "
            "seeds with a grid space, or search the seed with search.seed: {choice: [...]}"
        )
    if not space.search:
        raise UserError(f"{where}: search: an optuna space needs at least one searched parameter")


def check_space_models(configs: list[TrialConfig], input_dims=None, steps=None) -> None:
    """Build every distinct model of ``configs`` on a tiny fake batch (UserError if one fails).

    ``input_dims`` ({"text": d_T, ...}) defaults to MOSEI's and ``steps`` ({"text": N_T, ...})
    to 50 per modality; the search's dry run passes the dataset's when it exists. One build per
    distinct (model, kwargs, augment_at): about 0.1 s for the built-ins.
    """
    from tune_m3.models.seam import check_model_spec

    seen = set()
    for cfg in configs:
        key = (cfg.model, repr(sorted(cfg.model_kwargs.items())), cfg.augment_at)
        if key not in seen:
            seen.add(key)
            check_model_spec(cfg, input_dims, steps)


def _check_objectives(space: SearchSpace, where: str) -> None:
    """Several objectives: Optuna only, known metrics, ASHA on the first, a matching reference."""
    if not space.objectives:
        if space.reference is not None:
            raise UserError(f"{where}: reference: a hypervolume reference needs objectives: [...]")
        return
    objs = space.objectives
    if len(objs) < 2:
        raise UserError(
            f"{where}: objectives: give two or more (one objective is metric: and mode:)"
        )
    if space.algorithm.type != "optuna":
        raise UserError(f"{where}: objectives: several objectives need algorithm: {{type: optuna}}")
    for i, o in enumerate(objs):
        _check_metric(o.metric, where, key=f"objectives[{i}].metric")
    if "metric" in space.model_fields_set and space.metric != objs[0].metric:
        raise UserError(
            f"{where}: metric: '{space.metric}' is not the first objective "
            f"('{objs[0].metric}'); ASHA and the confirm stage use the first objective. Drop "
            "metric:/mode:, or put that metric first in objectives"
        )
    space.metric, space.mode = objs[0].metric, objs[0].mode
    if space.reference is not None and len(space.reference) != len(objs):
        raise UserError(
            f"{where}: reference: {len(space.reference)} value(s) for {len(objs)} objectives"
        )


def _check_metric(metric: str, where: str, key: str = "metric") -> None:
    """The metric must be one a trial reports every epoch (tune_m3.training), with a did-you-mean."""
    if is_epoch_metric(metric):
        return
    if metric.startswith(("test_", "diag_test_")):
        raise UserError(
            f"{where}: {key}: '{metric}' is only known at the end of a trial; use a per-epoch "
            f"metric such as val_mae or val_acc2 (or diag_val_... for validation diagnostics)"
        )
    known = list(epoch_metrics())
    raise UserError(
        f"{where}: {key}: '{metric}' is not a metric trials report{did_you_mean(metric, known)}; "
        f"per-epoch metrics: {', '.join(known)}, and diag_val_<modality>_<kind>_<pct>_<metric>[_drop]"
    )


def _baseline_kwarg_kind(kw: str) -> str:
    """The built-in baseline's kwarg type, from its constructor's defaults ('any' if unknown)."""
    import inspect

    from tune_m3.models.m3_baseline import M3Baseline

    p = inspect.signature(M3Baseline.__init__).parameters.get(kw)
    if p is None or p.default is inspect.Parameter.empty:
        return "any"
    return {bool: "bool", int: "int", float: "float"}.get(type(p.default), "other")


def field_kind(name: str, model: str | None = None) -> str:
    """'int', 'float', 'bool', 'other' for a TrialConfig field (audio_share: 'float'); 'any'
    for a model kwarg (``model.<kw>``: its type is the model's business, checked when built)."""
    if name == "audio_share":
        return "float"
    from tune_m3.config import LEGACY_MODEL_KEYS, MODEL_PREFIX

    kw = name.removeprefix(MODEL_PREFIX)
    if name.startswith(MODEL_PREFIX) or name in LEGACY_MODEL_KEYS:
        return _baseline_kwarg_kind(kw) if model is None or model == "m3_baseline" else "any"
    field = TrialConfig.model_fields.get(name)
    ann = getattr(field, "annotation", None)
    args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
    if args[0] is bool:
        return "bool"
    if args[0] is int:
        return "int"
    if args[0] is float:
        return "float"
    return "other"


def _check_types(space: SearchSpace, where: str) -> None:
    """Each searched field gets a distribution of its type (an integer field integers only)."""
    model = space.fixed.get("model", space.model.class_)
    model = model if isinstance(model, str) else None
    for k, d in space.search.items():
        kind = field_kind(k, model)
        if kind in ("bool", "other") and d.kind in ("uniform", "loguniform", "quniform"):
            raise UserError(
                f"{where}: search.{k}: {k} takes named values, not numbers from a range; "
                f"use choice: [...]"
            )
        if kind != "int":
            continue
        if d.kind in ("uniform", "loguniform"):
            raise UserError(
                f"{where}: search.{k}: {k} is an integer; {d.kind} draws fractions. Use "
                f"quniform: [low, high, 1] (or another integer step) or choice: [...]"
            )
        if d.kind == "quniform" and not all(float(x).is_integer() for x in d.args):
            raise UserError(
                f"{where}: search.{k}: {k} is an integer; quniform needs integer low, high and "
                f"step (got {list(d.args)})"
            )
        if d.kind in ("choice", "grid"):
            bad = [v for v in d.args if not isinstance(v, int) or isinstance(v, bool)]
            if bad:
                raise UserError(f"{where}: search.{k}: {k} is an integer; {bad[0]!r} is not")


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space_path(space: str) -> Path:
    p = Path(space).expanduser()
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError(f"space file {p} does not exist")
        return p
    named = SPACES_DIR / f"{space}.yaml"
    if not named.is_file():
        names = available_spaces()
        raise UserError(
            f"no search space named '{space}'{did_you_mean(space, names)}; named spaces: "
            f"{', '.join(names)} (or pass a path to a .yaml file)"
        )
    return named


def load_space(
    space: str,
    overrides: dict[str, Any] | None = None,
    options: dict[tuple[str, ...], tuple[Any, str]] | None = None,
    check_models: bool = True,
) -> SearchSpace:
    """Read, validate and return a space.

    ``overrides`` (from ``--set``) go into ``fixed`` (and pin a searched key); ``options`` (key
    path -> (value, flag), from the search's command line, e.g. ``("num_samples",) -> (5,
    "--num-samples")``) replace the file's values. The space is built once, from the file and
    both, so the field bounds and the semantic checks see what will run; an option out of its
    field's bounds is named by its flag. ``check_models=False`` leaves out the model check
    (:func:`check_space_models`, which imports torch) for a caller that runs it after its own
    cheaper checks.
    """
    path = resolve_space_path(space)
    raw = _read_yaml(path)
    for key in ("name", "path"):
        raw.pop(key, None)
    if overrides:
        raw["fixed"] = {**(raw.get("fixed") or {}), **overrides}
        search = raw.get("search")
        if isinstance(search, dict):  # --set pins a searched parameter
            raw["search"] = {k: d for k, d in search.items() if k not in overrides}
    for keys, (value, _flag) in (options or {}).items():
        _set_path(raw, keys, value)
    try:
        spec = SearchSpace(**raw, name=path.stem, path=str(path))
    except ValidationError as err:
        raise UserError(
            _option_error(err, options or {})
            or format_validation_error(err, str(path), list(SearchSpace.model_fields))
        ) from None
    if check_models:
        check_space_models(spec.example_configs())
    return spec


def _read_yaml(path: Path) -> dict[str, Any]:
    raw = safe_yaml.load_file(path)  # bounded: size and alias expansion (safe_yaml.py)
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: expected a mapping of keys (dataset, search, ...), got {type(raw).__name__}"
        )
    return dict(raw)


def _set_path(raw: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """``raw[k1][k2]... = value``, creating (or copying) the mappings on the way."""
    *head, last = keys
    for k in head:
        inner = raw.get(k)
        raw[k] = dict(inner) if isinstance(inner, dict) else {}
        raw = raw[k]
    raw[last] = value


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _option_error(err: ValidationError, options: dict[tuple[str, ...], tuple[Any, str]]) -> str:
    """``--num-samples must be >= 1 (got 0)`` when a command-line option broke a field bound."""
    for e in err.errors():
        hit = options.get(tuple(str(p) for p in e["loc"]))
        bound = [(op, v) for op, v in (e.get("ctx") or {}).items() if op in _BOUNDS]
        if hit and bound:
            value, flag = hit
            return f"{flag} must be {_BOUNDS[bound[0][0]]} {bound[0][1]} (got {value})"
    return ""


def describe(space: SearchSpace) -> str:
    """Human-readable summary for --dry-run."""
    lines = [f"space {space.name} ({space.path})"]
    if space.description:
        lines.append(f"  {space.description.strip()}")
    ds = space.dataset
    lines.append(
        f"  dataset: {ds.name}"
        + (
            f" (SYNTHETIC, {ds.synthetic.like}-shaped, scale {ds.synthetic.scale:g})"
            if ds.synthetic
            else ""
        )
    )
    lines.append(
        f"  algorithm: {space.algorithm.type}"
        + (f" (TPE, seed {space.algorithm.seed})" if space.algorithm.type == "optuna" else "")
    )
    sch = space.scheduler
    lines.append(
        f"  scheduler: {sch.type}"
        + (
            f" (grace {sch.grace_period} epochs, reduction factor {sch.reduction_factor:g})"
            if sch.type == "asha"
            else ""
        )
    )
    lines.append(f"  metric: {space.metric} ({space.mode})")
    if "model" in space.search:
        lines.append("  model: searched (below)")
    else:  # the model trials get: the model block, unless --set / fixed chose another
        first = space.example_configs()[0]
        lines.append(
            f"  model: {first.model}"
            + (f" kwargs {first.model_kwargs}" if first.model_kwargs else "")
            + (f" augment_at {first.augment_at}" if first.augment_at else "")
        )
    lines.append(f"  fixed: {space.fixed}")
    for k, d in space.search.items():
        lines.append(f"  search {k}: {d.kind} {d.args}")
    lines.append(
        f"  simplex: pi_audio = (1 - pi_text) * {space.simplex['audio_share']:g}, pi_vision = the rest"
    )
    if space.variants:
        for name, bundle in space.variants.items():
            lines.append(f"  variant {name}: {bundle}")
    lines.append(f"  seeds: {space.seeds}")
    n = space.num_trials()
    lines.append(
        f"  trials: {n}   max concurrent: {space.max_concurrent}   per trial: {space.resources.cpu:g} CPU, {space.resources.gpu:g} GPU"
    )
    epochs = space.example_configs()[0].max_epochs
    lines.append(
        f"  at most {n * epochs} trained epochs (max_epochs {epochs})"
        + (" before ASHA stops any" if sch.type == "asha" else "")
    )
    return "\n".join(lines)


def grid_table(space: SearchSpace) -> str:
    """The grid's trials, one per line (for --dry-run of grid spaces)."""
    rows = []
    for i, p in enumerate(space.grid_points()):
        v = space.trial_values(p)
        shown = {
            k: (round(x, 4) if isinstance(x, float) else x)
            for k, x in {**p, "pi_audio": v["pi_audio"], "pi_vision": v["pi_vision"]}.items()
        }
        rows.append(f"  {i + 1:>4}  " + "  ".join(f"{k}={x}" for k, x in shown.items()))
    return "\n".join(rows)

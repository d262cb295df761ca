"""The typed, validated configuration of one trial: what ``tune_m3.training`` runs and MLflow logs.

One flat set of names is used everywhere (Ray param space, ``--set key=value``, MLflow params,
analysis tables). The papers' symbols map as follows:

=================  ==========================  =============================================
name               paper symbol                meaning
=================  ==========================  =============================================
``scheme``         Table 1 rows                ``none`` (baseline), ``m3``, ``soft_m3``,
                                               ``random_mask``
``p_mask``         pM                          masking probability per mask unit
``pi_text``        πT                          modal probability of text (πA, πV likewise);
``pi_audio``       πA                          the three must sum to 1
``pi_vision``      πV
``granularity``    —                           mask unit: ``timestep`` (paper), ``sample``,
                                               ``batch`` (authors' code)
``p_missing``      missing fraction            perturbation: fraction of each batch whose
                                               target modality is zeroed (NAACL 2022)
``p_noise``        noise fraction              a disjoint fraction that gets noise
``sigma``          σ                           noise standard deviation
``noise_kind``     —                           ``additive`` (paper's text: m + N(0, σ²)) or
                                               ``multiplicative`` (paper's code: z·m, one
                                               z ~ N(0, σ²) per sample)
``sigma_scale``    —                           ``auto`` (default: ``absolute`` at the input
                                               hook, ``rms`` at a representation hook),
                                               ``absolute`` (σ as is) or ``rms`` (σ in units
                                               of the clean modality's RMS, additive only)
``perturb_count``  —                           ``round`` (half up) or ``floor`` (paper's code)
``soft_m3_mode``   —                           ``paper`` (pM gate, p_feature share) or
                                               ``authors`` (one modality per batch, rate π·pM)
``p_mask_schedule``  —                         pM over epochs: ``constant``, ``linear`` or
                                               ``cosine`` ramp over ``p_mask_warmup_epochs``
``model``          —                           ``m3_baseline`` (default), ``mult`` or
                                               ``module:Class`` (docs/models.md)
``model.<kw>``     —                           a constructor kwarg of the model, e.g.
                                               ``model.hidden``; held in ``model_kwargs``
``output_key``     —                           the prediction in a dict / tuple output
                                               (e.g. MMSA's ``M``)
``aux_losses``     —                           {key: weight}: the model's own losses (in its
                                               dict output) added to the L1 loss in training;
                                               logged as ``key=weight,...``
``augment_at``     —                           where masking/perturbation act: ``input``,
                                               a submodule (default: the model's own), or
                                               one subnet per modality ({text: a, audio: b,
                                               vision: c}, held as ``text=a,audio=b,vision=c``)
=================  ==========================  =============================================

The baseline's kwargs from before the model seam (``hidden``, ``proj``, ``dropout``,
``num_layers``, ``attn_dropout``, ``init``) are still accepted as aliases of ``model.hidden`` etc.
and logged as the latter.

The ``diag_*`` fields configure the test-time checks the same way (``diag_noise_kind``,
``diag_sigma_scale``). Options that reproduce the authors' code rather than the papers' text
(``soft_m3_mode``, ``perturb_count``, ``model.attn_dropout``, ``model.init``, ``lr_cooldown``,
``min_lr``, ``granularity: batch``) are listed with their effect in docs/fidelity.md; every
default is the behaviour tune_m3 had before they existed.

Invalid values are refused at construction with a message that names the field.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tune_m3.errors import UserError
from tune_m3.names import MODALITIES as MODALITY_NAMES

Probability = Field(ge=0.0, le=1.0)


class TrialConfig(BaseModel):
    """Everything one training run needs besides the data arrays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "synth_mosei"
    seed: int = 0

    # masking (M3 paper)
    scheme: Literal["none", "m3", "soft_m3", "random_mask"] = "none"
    p_mask: float = Field(0.0, ge=0.0, le=1.0)
    pi_text: float = Field(1 / 3, ge=0.0, le=1.0)
    pi_audio: float = Field(1 / 3, ge=0.0, le=1.0)
    pi_vision: float = Field(1 / 3, ge=0.0, le=1.0)
    granularity: Literal["timestep", "sample", "batch"] = "timestep"
    p_mask_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="pM over epochs, from 0 to p_mask (tune_m3/augment/schedule.py)"
    )
    p_mask_warmup_epochs: int = Field(0, ge=0, description="epochs the pM ramp takes")
    p_feature: float = Field(0.5, ge=0.0, le=1.0, description="soft_m3: features zeroed")
    soft_m3_mode: Literal["paper", "authors"] = Field(
        "paper", description="soft_m3: authors = one modality per batch, no pM gate"
    )
    rescale: bool = False

    # modality perturbation (robustness paper)
    p_missing: float = Field(0.0, ge=0.0, le=1.0)
    p_noise: float = Field(0.0, ge=0.0, le=1.0)
    sigma: float = Field(1.0, ge=0.0)
    noise_kind: Literal["additive", "multiplicative"] = "additive"
    sigma_scale: Literal["auto", "absolute", "rms"] = "auto"
    perturb_count: Literal["round", "floor"] = "round"
    perturb_target: Literal["text", "audio", "vision"] = "text"

    # model (docs/models.md): a built-in name or "module:Class", its constructor kwargs (given as
    # model.<kw> keys: --set model.hidden=64), and where M3 / perturbation act ("input" or a
    # submodule's dotted name; None = the model's default: a built-in's fusion input, else input)
    model: str = Field("m3_baseline", min_length=1)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    augment_at: str | None = Field(None, min_length=1)
    # a dict / tuple output: the prediction's key, and the model's own losses added in training
    output_key: str | None = Field(None, min_length=1)
    aux_losses: dict[str, float] = Field(default_factory=dict)

    # optimisation
    lr: float = Field(5e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(10, ge=1, description="early stopping on val loss")
    lr_patience: int = Field(2, ge=0)
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    lr_cooldown: int = Field(0, ge=0, description="ReduceLROnPlateau cooldown (epochs)")
    min_lr: float = Field(0.0, ge=0.0, description="ReduceLROnPlateau floor of the lr")
    grad_clip: float | None = Field(None, gt=0.0)
    max_train_samples: int | None = Field(None, ge=1, description="subsample train (debugging)")
    bucket_batches: bool = Field(False, description="batch similar lengths together (faster)")

    # runtime
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")

    # diagnostics at the end (robustness paper sec. 3)
    diagnostics: bool = True
    diag_fractions: tuple[float, ...] = (0.05, 0.10, 0.15, 0.30)
    diag_modalities: tuple[Literal["text", "audio", "vision"], ...] = MODALITY_NAMES
    diag_sigma: float = Field(1.0, ge=0.0)
    diag_noise_kind: Literal["additive", "multiplicative"] = "additive"
    diag_sigma_scale: Literal["auto", "absolute", "rms"] = "auto"
    diag_seed: int = 1234
    # validation diagnostics every epoch (a multi-objective search's diag_val_* objectives)
    val_diagnostics: tuple[str, ...] = Field(
        (), description="diag_val_* keys to report every val_diag_every epochs"
    )
    val_diag_every: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _model_keys(cls, values: Any) -> Any:
        """``model.<kw>`` keys (and the legacy flat baseline names) -> ``model_kwargs``."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        kwargs = dict(values.pop("model_kwargs", None) or {})
        for key in list(values):
            if key.startswith(MODEL_PREFIX):
                kwargs[key[len(MODEL_PREFIX) :]] = values.pop(key)
            elif key in LEGACY_MODEL_KEYS:
                kwargs.setdefault(key, values.pop(key))
        values["model_kwargs"] = kwargs
        return values

    @field_validator("augment_at", mode="before")
    @classmethod
    def _augment_at(cls, value: Any) -> Any:
        """A per-modality mapping ({text: a, audio: b, vision: c}) -> "text=a,audio=b,vision=c"."""
        from tune_m3.models.hooks import canonical_augment_at

        return canonical_augment_at(value)

    @model_validator(mode="after")
    def _check(self) -> TrialConfig:
        total = self.pi_text + self.pi_audio + self.pi_vision
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"pi_text + pi_audio + pi_vision must be 1 (got {self.pi_text:g} + "
                f"{self.pi_audio:g} + {self.pi_vision:g} = {total:g})"
            )
        if self.p_missing + self.p_noise > 1 + 1e-9:
            raise ValueError(
                f"p_missing + p_noise must be <= 1 (got {self.p_missing:g} + {self.p_noise:g})"
            )
        if not self.diag_fractions or not all(0 < f <= 1 for f in self.diag_fractions):
            raise ValueError("diag_fractions must be a non-empty list of fractions in (0, 1]")
        for pre in ("", "diag_"):
            if getattr(self, pre + "noise_kind") == "multiplicative" and (
                getattr(self, pre + "sigma_scale") == "rms"
            ):
                raise ValueError(
                    f"{pre}sigma_scale 'rms' applies to additive noise only; multiplicative "
                    f"noise is already scale-free: set {pre}sigma_scale: absolute"
                )
        from tune_m3.names import parse_diag_key

        for key in self.val_diagnostics:
            d = parse_diag_key(key)
            if d is None or d.split != "val" or d.modality not in MODALITY_NAMES:
                raise ValueError(
                    f"val_diagnostics: '{key}' is not a validation diagnostics key; expected "
                    "diag_val_<text|audio|vision>_<missing|noisy>_<pct|auc>_<metric>[_drop]"
                )
        return self

    @property
    def modal_probs(self) -> tuple[float, float, float]:
        """(πT, πA, πV)."""
        return (self.pi_text, self.pi_audio, self.pi_vision)

    def params(self) -> dict[str, Any]:
        """Flat params for MLflow / tables (tuples as comma-separated strings).

        The model's kwargs appear as ``model.<kw>`` (the same keys as ``--set`` and space files).
        """
        out = {}
        for k, v in self.model_dump().items():
            if k == "model_kwargs":
                out.update({f"{MODEL_PREFIX}{kw}": x for kw, x in sorted(v.items())})
                continue
            if k == "aux_losses":  # one string, like augment_at: "key=weight,..."
                v = ",".join(f"{key}={w:g}" for key, w in sorted(v.items())) or None
            out[k] = ",".join(map(str, v)) if isinstance(v, tuple) else v
        return out


MODEL_PREFIX = "model."
# Flat names of the baseline's kwargs from before the model seam, still accepted as aliases of
# model.<name> (``--set hidden=64`` == ``--set model.hidden=64``); logged as model.<name>.
LEGACY_MODEL_KEYS = ("hidden", "proj", "dropout", "num_layers", "attn_dropout", "init")


def is_model_key(key: str) -> bool:
    """A model kwarg key (``model.hidden``) or a legacy alias of one (``hidden``)."""
    return (key.startswith(MODEL_PREFIX) and len(key) > len(MODEL_PREFIX)) or key in (
        LEGACY_MODEL_KEYS
    )


def field_names() -> list[str]:
    return [k for k in TrialConfig.model_fields if k != "model_kwargs"]


def did_you_mean(key: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


def make_config(values: dict[str, Any], where: str = "config") -> TrialConfig:
    """Build a :class:`TrialConfig`; a bad key or value becomes one UserError naming it."""
    try:
        return TrialConfig(**values)
    except ValidationError as err:
        known = field_names() + [MODEL_PREFIX + k for k in LEGACY_MODEL_KEYS]
        raise UserError(format_validation_error(err, where, known)) from None


def format_validation_error(err: ValidationError, where: str, known: list[str]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            lines.append(f"{where}: unknown key '{loc}'{did_you_mean(key, known)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(
                f"{where}: '{loc}': {msg}"
                + (
                    f" (got {e['input']!r})"
                    if loc != "(top level)" and not isinstance(e.get("input"), dict)
                    else ""
                )
            )
    return "\n".join(lines)


def add_overrides_argument(parser: Any, help: str) -> None:
    """The repeatable ``--set KEY=VALUE`` option of every CLI (read with :func:`parse_overrides`)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["p_mask=0.2", "scheme=m3"]`` -> dict, values parsed as YAML scalars/lists."""
    from tune_m3.safe_yaml import load_text

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set p_mask=0.2")
        # the value is parsed as YAML, aliases bounded as in space files (safe_yaml.py)
        out[key.strip()] = load_text(raw, f"--set {item!r}: value") if raw.strip() else None
    return out

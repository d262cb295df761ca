"""Trial failures that would repeat, told apart from those a retry can fix.

Ray Tune retries a trial whose trainable raises (``FailureConfig(max_failures=2)`` in
``search/stages.py``: up to 3 starts), from its last checkpoint. That is right for infrastructure
failures (a worker killed, a node lost, out of memory, a full disk) and wrong for a failure the
configuration itself causes: it fails again, at the same epoch, three times over. Such
*deterministic* failures are caught inside the trial (``search/trainable.py``), reported once as a final
result marked with :data:`FAILED_KEY` and the reason, and the trial returns: Ray does not retry
a trial that returns, and the driver marks it FAILED with the reason (MLflow run status and
``tune_m3.error`` tag, ``trials.parquet``'s ``status`` and ``error``; Optuna: state FAIL).

Deterministic (:func:`is_deterministic`):

- :class:`TrialFailed` and its kinds: the loss became NaN or infinite (``TrainingDiverged``,
  ``training/epoch.py``), the model's predictions are NaN or infinite (:class:`NonFinitePredictions`,
  raised by ``metrics.compute_metrics``);
- a :class:`~tune_m3.errors.UserError` (a setting or model spec the user can fix);
- an exception raised inside the code of the user's own model (``model: module:Class``; a frame
  of the traceback is in that module's file), unless it is a resource error.

Retried: everything else, in particular ``MemoryError``, ``OSError`` (disk full, network) and
torch's ``OutOfMemoryError`` (another trial may have held the GPU's memory), and exceptions of
tune_m3's own code (a bug, which keeps its traceback in Ray's error file).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from tune_m3.errors import UserError

FAILED_KEY = "trial_failed"  # 1 in the final result of a trial failed for good
REASON_KEY = "error_message"  # why (one line)
RESOURCE_ERRORS = (MemoryError, OSError)


class TrialFailed(RuntimeError):
    """A failure the trial's configuration causes: a retry would fail the same way."""


class NonFinitePredictions(TrialFailed, ValueError):
    """The model predicted NaN or infinity (a ``ValueError`` too, as before)."""


def user_model_frame(err: BaseException, model: str) -> traceback.FrameSummary | None:
    """The innermost frame of ``err``'s traceback in the module of a ``module:Class`` model."""
    if ":" not in model:
        return None
    module = sys.modules.get(model.split(":", 1)[0])
    path = getattr(module, "__file__", None)
    if not path:
        return None
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == path]
    return frames[-1] if frames else None


def is_resource_error(err: BaseException) -> bool:
    return isinstance(err, RESOURCE_ERRORS) or type(err).__name__ == "OutOfMemoryError"


def is_deterministic(err: BaseException, model: str) -> bool:
    """True if retrying the trial would fail the same way (see the module doc)."""
    if isinstance(err, TrialFailed | UserError):
        return True
    return not is_resource_error(err) and user_model_frame(err, model) is not None


def reason(err: BaseException, model: str) -> str:
    """One line: the message, and for an error in the user's model where it was raised."""
    if isinstance(err, TrialFailed | UserError):
        return str(err)
    where = user_model_frame(err, model)
    at = f" (in {where.name}, {where.filename}:{where.lineno})" if where else ""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"model '{model}' raised {type(err).__name__}: {first}{at}"


def failed_result(err: BaseException, model: str, metric: str) -> dict[str, Any]:
    """The final report of a trial failed for good (``metric`` NaN: Ray wants the key)."""
    out: dict[str, Any] = {FAILED_KEY: 1, REASON_KEY: reason(err, model), metric: float("nan")}
    if type(err).__name__ == "TrainingDiverged":
        out["diverged"] = 1
    return out

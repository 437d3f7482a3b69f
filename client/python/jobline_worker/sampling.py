"""The sampling methods of capture collections, over files on disk.

A capture collection names a method and its keyword arguments, e.g.
``random`` with ``{"size": 1000}``. :func:`plan` checks them and fills in
the defaults (the parameters are logged as Antenna logs them), then
:func:`sample` picks the captures from a list of files.

Supported methods and their parameters (every method also takes
``deployment_ids``, a list of ids that keeps only files of those
"deployment-<id>" folders, and ``event_ids``, which must be null because
files on disk belong to no event):

``full``
    every file.
``random``
    ``size`` files drawn at random (default 100), or every file when there
    are fewer.
``interval``
    per deployment folder, the first capture and then each next capture
    taken at least ``minute_interval`` minutes (default 10) after the last
    one kept.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import numbers
import random
from typing import Any, Dict, List, Mapping, Optional, Sequence

from jobline_worker.capture_files import CaptureFile

# Each method's parameters with their defaults, in the order they are
# logged.
_PARAMETERS: Dict[str, Dict[str, Any]] = {
    "full": {"event_ids": None, "deployment_ids": None},
    "random": {"size": 100, "event_ids": None, "deployment_ids": None},
    "interval": {
        "minute_interval": 10,
        "event_ids": None,
        "deployment_ids": None,
    },
}

SUPPORTED_METHODS = tuple(sorted(_PARAMETERS))


class SamplingError(ValueError):
    """The method is not supported or a parameter is bad; the message says
    which, in words fit for a job's error."""


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """A checked sampling request."""

    # The collection's method, e.g. "random".
    method: str
    # Every parameter of the method, defaults filled in, in logging order.
    params: Dict[str, Any]

    @property
    def function_name(self) -> str:
        """The name the method is logged under, e.g. "sample_random"."""
        return f"sample_{self.method}"


def plan(method: str, kwargs: Mapping[str, Any]) -> SamplingPlan:
    """Checks `method` and its `kwargs` (JSON values, numbers possibly as
    floats) and returns them with the defaults filled in. Whole numbers
    come back as ints, so {"size": 1000.0} becomes {"size": 1000}.

    Raises SamplingError for a method this module does not implement, an
    unknown parameter, or a bad value.
    """
    defaults = _PARAMETERS.get(method)
    if defaults is None:
        raise SamplingError(
            f"sampling method '{method}' is not supported by this worker "
            f"(supported: {', '.join(SUPPORTED_METHODS)})")
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise SamplingError(
            f"unknown parameter '{unknown[0]}' for sampling method "
            f"'{method}' (known: {', '.join(defaults)})")

    params = dict(defaults)
    params.update(kwargs)
    if params["event_ids"] is not None:
        raise SamplingError(
            "event_ids must be null: captures on disk belong to no event")
    if params["deployment_ids"] is not None:
        ids = params["deployment_ids"]
        if not isinstance(ids, list):
            raise SamplingError("deployment_ids must be a list of ids")
        params["deployment_ids"] = [
            _whole_number("deployment_ids", value, minimum=1) for value in ids
        ]
    if "size" in params:
        params["size"] = _whole_number("size", params["size"], minimum=0)
    if "minute_interval" in params:
        params["minute_interval"] = _positive_number(
            "minute_interval", params["minute_interval"])
    return SamplingPlan(method=method, params=params)


def sample(sampling: SamplingPlan, files: Sequence[CaptureFile],
           rng: Optional[random.Random] = None) -> List[CaptureFile]:
    """Returns the files `sampling` picks from `files`, in time order (then
    by path). `rng` draws the random sample (default: a generator seeded
    by the system); the other methods do not use it."""
    params = sampling.params
    if params["deployment_ids"] is not None:
        wanted = set(params["deployment_ids"])
        files = [f for f in files if f.deployment_id in wanted]

    if sampling.method == "full":
        return sorted(files)
    if sampling.method == "random":
        rng = rng or random.Random()
        return sorted(rng.sample(list(files), min(params["size"],
                                                  len(files))))
    if sampling.method == "interval":
        gap = datetime.timedelta(minutes=params["minute_interval"])
        return sorted(_every_interval(files, gap))
    raise SamplingError(f"sampling method '{sampling.method}' is not "
                        "supported by this worker")


def _every_interval(files: Sequence[CaptureFile],
                    gap: datetime.timedelta) -> List[CaptureFile]:
    """Per deployment folder: the first file, then each file at least `gap`
    after the last one kept."""

    def folder(capture: CaptureFile) -> str:
        return capture.deployment_folder

    kept: List[CaptureFile] = []
    by_folder = sorted(files, key=lambda f: (folder(f), f))
    for _, group in itertools.groupby(by_folder, key=folder):
        last: Optional[datetime.datetime] = None
        for capture in group:
            if last is None or capture.timestamp - last >= gap:
                kept.append(capture)
                last = capture.timestamp
    return kept


def _whole_number(name: str, value: Any, minimum: int) -> int:
    """`value` as an int if it is a whole number >= `minimum`; else raises
    SamplingError naming the parameter."""
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and float(value).is_integer()
            and value >= minimum):
        return int(value)
    raise SamplingError(
        f"{name} must be a whole number of at least {minimum}, not {value!r}")


def _positive_number(name: str, value: Any) -> float:
    """`value` if it is a finite number > 0 (an int when whole); else raises
    SamplingError naming the parameter."""
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        return int(value) if float(value).is_integer() else float(value)
    raise SamplingError(f"{name} must be a number above 0, not {value!r}")

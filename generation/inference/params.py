"""Sampling parameters: a model version's defaults, overridden by a user within its bounds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

# Scheduler names a model version's defaults or a user may give, and the diffusers classes they stand for.
SCHEDULERS: dict[str, str] = {
    "PNDM": "PNDMScheduler",
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "EulerAncestral": "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistep": "DPMSolverMultistepScheduler",
    "UniPC": "UniPCMultistepScheduler",
}
DTYPES = ("float32", "float16", "bfloat16")

# What a user may override, and how each is checked.
OVERRIDABLE = ("scheduler", "steps", "guidance_scale", "height", "width")


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"sampling.{name} must be a whole number, not {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"sampling.{name} must be a whole number, not {value!r}.") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"sampling.{name} must be a whole number, not {value!r}.")
    return int(number)


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"sampling.{name} must be a number, not {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"sampling.{name} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"sampling.{name} must be a finite number, not {value!r}.")
    return number


def _show(value) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _within(name: str, value, bounds: dict):
    limits = bounds.get(name)
    if limits is None:
        return value
    low, high = limits
    if not low <= value <= high:
        raise ValueError(f"sampling.{name} must be between {_show(low)} and {_show(high)}; {_show(value)} is outside.")
    return value


@dataclass(frozen=True)
class SamplingParams:
    """Everything that, with the prompt and the seed, determines an image.

    ``dtype`` is the precision on CUDA (the CPU always computes in float32); it comes from
    the model version's defaults and is not a user override.
    """

    scheduler: str = "PNDM"
    steps: int = 75
    guidance_scale: float = 3.0
    height: int = 512
    width: int = 512
    dtype: str = "bfloat16"

    @classmethod
    def from_defaults(cls, defaults: dict, overrides: dict | None = None) -> SamplingParams:
        """The model version's ``defaults`` with the user's ``overrides``; ValueError names the bad field."""
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise ValueError('Give sampling overrides as an object, e.g. {"steps": 50}.')
        unknown = sorted(str(k) for k in overrides if k not in OVERRIDABLE)
        if unknown:
            raise ValueError(
                f"Unknown sampling parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"you may override {', '.join(OVERRIDABLE)}."
            )
        bounds = defaults.get("bounds") or {}
        merged = {f.name: defaults.get(f.name, f.default) for f in fields(cls)}
        merged.update(overrides)
        scheduler = merged["scheduler"]
        if scheduler not in SCHEDULERS:
            raise ValueError(f"sampling.scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}.")
        steps = _within("steps", _integer("steps", merged["steps"]), bounds)
        if steps < 1:
            raise ValueError(f"sampling.steps must be at least 1, not {steps}.")
        guidance = _within("guidance_scale", _number("guidance_scale", merged["guidance_scale"]), bounds)
        if guidance < 1:
            raise ValueError(f"sampling.guidance_scale must be at least 1, not {guidance:g}.")
        sizes = {}
        for name in ("height", "width"):
            size = _within(name, _integer(name, merged[name]), bounds)
            if size < 8 or size % 8:
                raise ValueError(f"sampling.{name} must be a positive multiple of 8 pixels, not {size}.")
            sizes[name] = size
        dtype = str(merged["dtype"])
        if dtype not in DTYPES:
            raise ValueError(f"The model version's dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
        return cls(scheduler=scheduler, steps=steps, guidance_scale=guidance, dtype=dtype, **sizes)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SamplingParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

"""Image generation with a model version's diffusers pipeline (see docs/inference.md).

    from generation.inference import get_engine, SamplingParams, GenerationCancelled

Importing this package imports neither torch nor diffusers, and nothing here touches CUDA
before a pipeline is loaded.
"""

from .engine import Engine, GenerationCancelled, PromptTooLong, clear_engines, get_engine, resolve_device
from .params import SCHEDULERS, SamplingParams

__all__ = [
    "SCHEDULERS",
    "Engine",
    "GenerationCancelled",
    "PromptTooLong",
    "SamplingParams",
    "clear_engines",
    "get_engine",
    "resolve_device",
]

"""The generation engine: one loaded diffusers pipeline per model version per process.

``get_engine(model_version)`` is cheap: it returns the process's cached engine and loads nothing.
``engine.count_tokens`` loads only the tokenizer (the web process uses it for previews);
``engine.generate`` verifies the model files, loads the pipeline on first use (choosing the device
then, never at import time and never before a worker forks) and keeps it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from .params import SCHEDULERS, SamplingParams

logger = logging.getLogger(__name__)


class GenerationCancelled(Exception):
    """Raised by ``Engine.generate`` when ``should_cancel()`` returned True between denoising steps."""

    def __init__(self, message: str = "Generation was cancelled."):
        super().__init__(message)


class PromptTooLong(ValueError):
    """A prompt has more tokens than the text encoder takes; it is refused, never truncated."""


def _setting(name: str, default):
    """A Django setting, else the environment variable of the same name, else ``default``."""
    fallback = os.environ.get(name, default)
    try:
        from django.conf import settings

        return getattr(settings, name, fallback)
    except Exception:  # outside Django (benchmarks, scripts)
        return fallback


def _flag(value) -> bool | None:
    """True/False for on/off-like values, None for "auto"."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return None
    return text in ("1", "true", "yes", "on")


def resolve_device(requested: str | None = None) -> str:
    """The device a pipeline loads on: GENERATION_DEVICE ("auto", "cpu", "cuda", "cuda:N").

    Only called when a pipeline is loaded, so a web process or a worker parent never initialises CUDA.
    """
    import torch

    requested = str(requested or _setting("GENERATION_DEVICE", "auto")).strip().lower()
    if requested in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"GENERATION_DEVICE is {requested!r}, but no CUDA device is available to this process.")
    return requested


class Engine:
    """Generates images with one model version. Get it with ``get_engine``."""

    def __init__(self, model_version, *, device: str | None = None, options: dict | None = None):
        self.model_version = model_version
        self.directory = Path(model_version.directory)
        self.defaults = dict(model_version.defaults or {})
        self.requested_device = device
        self.options = dict(options or {})
        self.device: str | None = None  # chosen when the pipeline loads
        self.dtype = None
        self.pipeline = None
        self.loads = 0  # how many times this engine loaded its pipeline (1 in a healthy worker)
        self.compiled = False
        self._tokenizer = None
        self._schedulers: dict[str, object] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = f"loaded on {self.device}" if self.pipeline is not None else "not loaded"
        return f"<Engine {self.model_version} ({state})>"

    # --- Tokens (cheap: tokenizer only) ----------------------------------------------------------

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self):
        import transformers

        class_name = "CLIPTokenizer"
        index = self.directory / "model_index.json"
        if index.exists():
            entry = json.loads(index.read_text()).get("tokenizer") or [None, None]
            if entry[0] == "transformers" and entry[1]:
                class_name = entry[1]
        tokenizer_class = getattr(transformers, class_name, None) or transformers.AutoTokenizer
        return tokenizer_class.from_pretrained(self.directory / "tokenizer", local_files_only=True)

    @property
    def max_prompt_tokens(self) -> int:
        """The most tokens a prompt may have, counting the begin- and end-of-text tokens the text encoder
        adds (77 for CLIP: 75 of the prompt's own). Longer prompts are refused, never truncated."""
        limits = [int(self.tokenizer.model_max_length)]
        if self.defaults.get("max_prompt_tokens"):
            limits.append(int(self.defaults["max_prompt_tokens"]))
        return min(limits)

    def count_tokens(self, prompt: str) -> int:
        """Tokens of ``prompt`` as the text encoder sees it, begin- and end-of-text tokens included."""
        return len(self.tokenizer(prompt, truncation=False, add_special_tokens=True, verbose=False)["input_ids"])

    def count_tokens_many(self, prompts: Sequence[str]) -> list[int]:
        """``count_tokens`` of each prompt, in one batched call of the tokenizer (thousands at once)."""
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), truncation=False, add_special_tokens=True, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def check_prompts(self, prompts: Sequence[str]) -> None:
        limit = self.max_prompt_tokens
        for prompt in prompts:
            count = self.count_tokens(prompt)
            if count > limit:
                raise PromptTooLong(
                    f"This prompt has {count} tokens, more than the text encoder's limit of {limit}: {prompt!r}"
                )

    # --- Loading ------------------------------------------------------------------------------------

    def verify(self) -> None:
        """Raise registry.services.ModelFilesChanged unless the directory holds exactly the registered files
        (full hash the first time in a process, then file list and sizes)."""
        from registry.services import verify_model_files

        verify_model_files(self.model_version)

    def _option(self, name: str, setting: str, default):
        if name in self.options:
            return self.options[name]
        return _setting(setting, default)

    def load(self):
        """Verify the files and load the pipeline (once per process); returns it."""
        with self._lock:
            self.verify()
            if self.pipeline is not None:
                return self.pipeline
            import torch
            from diffusers import DiffusionPipeline

            started = time.monotonic()
            device = resolve_device(self.requested_device)
            if device.startswith("cuda"):
                dtype = getattr(torch, str(self.defaults.get("dtype") or "bfloat16"))
            else:
                dtype = torch.float32
                # Intra-op threads for CPU inference (process-wide). One is fastest for the tiny demo model and
                # avoids OpenMP spin-wait thrashing when the web server, the worker and tests share few cores.
                threads = int(self._option("cpu_threads", "GENERATION_CPU_THREADS", 1) or 0)
                if threads > 0 and torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
            pipeline = DiffusionPipeline.from_pretrained(self.directory, dtype=dtype, local_files_only=True)
            pipeline.set_progress_bar_config(disable=True)
            pipeline.to(device)
            self.device, self.dtype = device, dtype
            if device.startswith("cuda"):
                from .cuda import optimize_pipeline

                self.compiled = optimize_pipeline(
                    pipeline,
                    channels_last=_flag(self._option("channels_last", "GENERATION_CHANNELS_LAST", True)) is not False,
                    fuse_qkv=_flag(self._option("fuse_qkv", "GENERATION_FUSE_QKV", True)) is not False,
                    compile_unet=_flag(self._option("compile", "GENERATION_TORCH_COMPILE", "auto")) is not False,
                    compile_mode=str(self._option("compile_mode", "GENERATION_TORCH_COMPILE_MODE", "default")),
                )
            elif any(self.options.get(k) for k in ("channels_last", "fuse_qkv", "compile")):
                # Tests and benchmarks may ask for the CUDA optimisations on the CPU to check they run.
                from .cuda import optimize_pipeline

                self.compiled = optimize_pipeline(
                    pipeline,
                    channels_last=bool(self.options.get("channels_last")),
                    fuse_qkv=bool(self.options.get("fuse_qkv")),
                    compile_unet=bool(self.options.get("compile")),
                    compile_mode=str(self.options.get("compile_mode", "default")),
                    cuda_backends=False,
                )
            self._schedulers = {self._scheduler_name(pipeline.scheduler): pipeline.scheduler}
            self.pipeline = pipeline
            self.loads += 1
            logger.info("Loaded %s on %s (%s) in %.1f s", self.model_version, device, dtype, time.monotonic() - started)
            return pipeline

    def unload(self) -> None:
        with self._lock:
            was_cuda = bool(self.device and self.device.startswith("cuda"))
            self.pipeline = None
            self._schedulers = {}
            if was_cuda:
                import torch

                torch.cuda.empty_cache()

    @staticmethod
    def _scheduler_name(scheduler) -> str:
        class_name = type(scheduler).__name__
        return next((name for name, cls in SCHEDULERS.items() if cls == class_name), class_name)

    def _scheduler(self, name: str):
        if name not in self._schedulers:
            import diffusers

            scheduler_class = getattr(diffusers, SCHEDULERS[name])
            self._schedulers[name] = scheduler_class.from_config(self.pipeline.scheduler.config)
        return self._schedulers[name]

    # --- Generating ----------------------------------------------------------------------------------

    @property
    def max_batch(self) -> int:
        """Images per pipeline call (one UNet call evaluates twice as many, for classifier-free guidance)."""
        default = 16 if self.device and self.device.startswith("cuda") else 8
        return max(1, int(self._option("max_batch", "GENERATION_MAX_BATCH", default) or default))

    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        params: SamplingParams,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list:
        """One 8-bit grayscale PIL image (mode "L") per prompt.

        Each image depends only on its own prompt, seed and ``params`` (a torch.Generator per image), not on
        the other images of the call or its place among them. ``should_cancel()`` is called before each chunk
        and after every denoising step; when it returns True, GenerationCancelled is raised.
        """
        prompts, seeds = list(prompts), [int(s) for s in seeds]
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt.")
        if not prompts:
            return []
        self.check_prompts(prompts)
        with self._lock:
            pipeline = self.load()
            pipeline.scheduler = self._scheduler(params.scheduler)
            images = []
            size = self.max_batch
            for start in range(0, len(prompts), size):
                if should_cancel is not None and should_cancel():
                    raise GenerationCancelled()
                images.extend(
                    self._generate_chunk(prompts[start:start + size], seeds[start:start + size], params, should_cancel)
                )
            return images

    def _generate_chunk(self, prompts, seeds, params: SamplingParams, should_cancel):
        import torch
        from PIL import Image

        # A CPU generator per image (created afresh for every attempt): an image's initial noise depends only
        # on its seed, the same on every device and whatever else is in the batch.
        def on_step_end(pipeline, step, timestep, tensors):
            if should_cancel is not None and should_cancel():
                raise GenerationCancelled()
            return tensors

        def run():
            return self.pipeline(
                prompt=prompts,
                height=params.height,
                width=params.width,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                output_type="pt",
                callback_on_step_end=on_step_end,
            ).images

        with torch.inference_mode():
            try:
                images = run()
            except GenerationCancelled:
                raise
            except Exception:
                # torch.compile failing on a new shape or setup must not take generation down: run eagerly.
                eager = getattr(self.pipeline.unet, "_orig_mod", None)
                if not self.compiled or eager is None:
                    raise
                logger.warning("The compiled UNet failed; falling back to eager mode", exc_info=True)
                self.pipeline.unet, self.compiled = eager, False
                images = run()
            # As diffusers' PIL output then Pillow's convert("L"), computed on the device: 8-bit RGB, then
            # ITU-R 601-2 luma with Pillow's integer rounding; only the 8-bit grayscale pixels cross to the host.
            # NaN or inf in the decoder output become arbitrary 8-bit values: counted here for quality control.
            nonfinite = (~torch.isfinite(images)).flatten(1).sum(1).tolist()
            rgb = (images.float() * 255).round().to(torch.int32)
            luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
            pixels = luma.to(torch.uint8).cpu().numpy()
        pictures = [Image.fromarray(p, mode="L") for p in pixels]
        for picture, count in zip(pictures, nonfinite):
            picture.info["nonfinite_values"] = int(count)
        return pictures


# --- The process's engines --------------------------------------------------------------------------

_ENGINES: OrderedDict[tuple, Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def _forget_engines_after_fork() -> None:
    # A forked child must not use its parent's pipelines (CUDA state does not survive a fork).
    global _ENGINES_LOCK
    _ENGINES_LOCK = threading.Lock()
    _ENGINES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_engines_after_fork)


def get_engine(model_version) -> Engine:
    """The process's engine for ``model_version`` (created on first use; loads nothing by itself).

    At most GENERATION_ENGINE_CACHE_SIZE (default 2) engines are kept; the least recently used is unloaded.
    """
    key = (model_version.pk, str(model_version.directory))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = Engine(model_version)
            limit = max(1, int(_setting("GENERATION_ENGINE_CACHE_SIZE", 2)))
            while len(_ENGINES) > limit:
                _, evicted = _ENGINES.popitem(last=False)
                evicted.unload()
        else:
            _ENGINES.move_to_end(key)
            engine.model_version = model_version  # verify against the freshest manifest
        return engine


def clear_engines() -> None:
    """Unload every engine of this process."""
    with _ENGINES_LOCK:
        while _ENGINES:
            _, engine = _ENGINES.popitem()
            engine.unload()

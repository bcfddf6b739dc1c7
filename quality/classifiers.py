"""QC classifiers: local TorchScript files, checked by SHA-256, that say whether an image shows what its
prompt asked for (sex, age, race, view, findings).

Nothing is ever downloaded. A file is checked when it is registered (``check_model_file``: hash, loads,
runs on a probe batch, output shape) and again before each use; at generation time a configured model
that cannot run (file missing or changed, raising, wrong output) does not stop generation: each image's
check is marked "unavailable" with the reason, and the quality card counts those images.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from cxr_platform.hashing import sha256_path

from .checks import FAILED, PASSED, UNAVAILABLE, CheckResult

logger = logging.getLogger(__name__)

CATEGORICAL = ("sex", "race", "view")
MAX_INPUT_SIZE = 1024


class ModelUnavailable(Exception):
    """A QC model cannot run; the message says why, in words an operator can act on."""


@dataclass(frozen=True)
class Declaration:
    """What a QC model file is declared to do (the registration's arguments, or a ``QCModel`` row)."""

    predicts: str
    labels: tuple
    input_size: int
    mean: float
    std: float
    threshold: float
    feature_dim: int = 0  # an encoder's output size; 0 before registration has measured it

    @classmethod
    def of(cls, qc_model) -> "Declaration":
        return cls(qc_model.predicts, tuple(qc_model.labels), int(qc_model.input_size), float(qc_model.mean),
                   float(qc_model.std), float(qc_model.threshold), int(qc_model.feature_dim))

    @property
    def outputs(self) -> int:
        if self.predicts == "features":
            return self.feature_dim
        return 1 if self.predicts == "age" else len(self.labels)


def device() -> str:
    requested = str(getattr(settings, "QC_DEVICE", "auto") or "auto")
    if requested == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _last_line(exc: Exception) -> str:
    """TorchScript wraps the model's own error in a long traceback; its last line says what happened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _load(path: Path, map_location: str):
    import torch

    try:
        module = torch.jit.load(str(path), map_location=map_location)
    except Exception as exc:  # any load failure means the file is not a usable TorchScript model
        raise ModelUnavailable(f"{path.name} is not a loadable TorchScript file ({type(exc).__name__}: "
                               f"{_last_line(exc)}).") from None
    module.eval()
    return module


def prepare(arrays: list[np.ndarray], declaration: Declaration, on: str = "cpu"):
    """``(N, 1, S, S)`` float tensor: each 8-bit image resized to the declared size and normalised."""
    import torch
    from PIL import Image

    size = declaration.input_size
    batch = np.empty((len(arrays), 1, size, size), dtype=np.float32)
    for n, array in enumerate(arrays):
        picture = Image.fromarray(np.asarray(array, dtype=np.uint8))
        if picture.size != (size, size):
            picture = picture.resize((size, size), Image.BILINEAR)
        batch[n, 0] = np.asarray(picture, dtype=np.float32) / 255.0
    batch = (batch - declaration.mean) / declaration.std
    return torch.from_numpy(batch).to(on)


def run(module, batch, declaration: Declaration) -> np.ndarray:
    """The model's outputs as an ``(N, outputs)`` array; ModelUnavailable if it raises or its output
    does not have the declared shape or is not finite."""
    import torch

    try:
        with torch.inference_mode():
            output = module(batch)
    except Exception as exc:  # the model's own failure: reported, never a silently unchecked image
        raise ModelUnavailable(f"The model raised {type(exc).__name__}: {_last_line(exc)}") from None
    if not isinstance(output, torch.Tensor):
        raise ModelUnavailable(f"The model returned {type(output).__name__}, not a tensor.")
    n = batch.shape[0]
    if declaration.predicts == "age" and tuple(output.shape) == (n,):
        output = output.reshape(n, 1)
    if declaration.predicts == "features" and not declaration.feature_dim:
        if output.ndim != 2 or output.shape[0] != n or output.shape[1] < 1:
            raise ModelUnavailable(f"The encoder's output has shape {tuple(output.shape)}; (N, D) features were "
                                   "expected, one row per image.")
    elif tuple(output.shape) != (n, declaration.outputs):
        raise ModelUnavailable(f"The model's output has shape {tuple(output.shape)}; {(n, declaration.outputs)} "
                               f"was declared ({declaration.outputs} value(s) per image for {declaration.predicts}).")
    values = output.detach().float().cpu().numpy()
    if not np.isfinite(values).all():
        raise ModelUnavailable("The model returned NaN or infinite values.")
    return values


def check_declaration(declaration: Declaration, vocabulary: dict | None = None) -> list[str]:
    """Problems with a declaration, in words; empty when it is sound."""
    problems = []
    if declaration.predicts not in (*CATEGORICAL, "age", "findings", "features"):
        problems.append(f"predicts must be one of sex, age, race, view, findings or features, not "
                        f"{declaration.predicts!r}.")
    if declaration.predicts not in ("age", "features") and not declaration.labels:
        problems.append("Name the model's outputs (labels), one per output, in order.")
    if declaration.predicts == "findings" and vocabulary is not None:
        unknown = [label for label in declaration.labels if label not in vocabulary]
        if unknown:
            problems.append(f"Unknown finding(s) {', '.join(unknown)}; this model version knows "
                            f"{', '.join(sorted(vocabulary))}.")
    if len(set(declaration.labels)) != len(declaration.labels):
        problems.append("Labels must be distinct.")
    if not 8 <= declaration.input_size <= MAX_INPUT_SIZE:
        problems.append(f"The input size must be between 8 and {MAX_INPUT_SIZE} pixels.")
    if not declaration.std > 0:
        problems.append("The normalisation's standard deviation must be positive.")
    if declaration.predicts == "features":
        pass  # an encoder decides nothing: no threshold
    elif declaration.predicts == "age":
        if not declaration.threshold > 0:
            problems.append("For age the threshold is the largest accepted error in years, a positive number.")
    elif not 0 < declaration.threshold < 1:
        problems.append("The threshold is a probability between 0 and 1 (exclusive).")
    return problems


def check_model_file(path, sha256: str, declaration: Declaration) -> int:
    """Refuse a QC model file that is missing, not the configured file (SHA-256), not loadable, raising
    on a probe batch, or whose output does not have the declared shape. Raises ModelUnavailable;
    returns the number of outputs per image."""
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailable(f"No file at {path}.")
    actual = sha256_path(path)
    if actual != sha256.lower():
        raise ModelUnavailable(f"The SHA-256 of {path.name} is {actual}, not the configured {sha256.lower()}.")
    module = _load(path, "cpu")
    probe = np.full((declaration.input_size, declaration.input_size), 128, dtype=np.uint8)
    return int(run(module, prepare([probe, probe], declaration), declaration).shape[1])


def encode_folder(path, sha256: str, declaration: Declaration, folder, *, chunk: int = 32) -> np.ndarray:
    """An encoder's features of every PNG / JPEG image in ``folder`` (sorted by name), on the CPU."""
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) < 2:
        raise ModelUnavailable(f"{folder} holds {len(files)} image(s); a reference set needs at least 2.")
    module = _load(Path(path), "cpu")
    rows = []
    for start in range(0, len(files), chunk):
        arrays = []
        for file in files[start:start + chunk]:
            with Image.open(file) as picture:
                arrays.append(np.asarray(picture.convert("L")))
        rows.append(run(module, prepare(arrays, declaration), declaration))
    return np.concatenate(rows).astype(np.float32)


class _Loaded:
    """Modules loaded in this process, keyed by file, size, mtime and hash: a changed file is hashed again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._modules: dict[tuple, object] = {}

    def get(self, qc_model):
        path = Path(qc_model.path)
        try:
            stat = os.stat(path)
        except OSError:
            raise ModelUnavailable(f"The file {path} is missing.") from None
        key = (qc_model.pk, str(path), stat.st_size, stat.st_mtime_ns, qc_model.sha256)
        with self._lock:
            if key in self._modules:
                return self._modules[key]
        actual = sha256_path(path)
        if actual != qc_model.sha256:
            raise ModelUnavailable(f"The file {path.name} changed since registration (SHA-256 {actual[:12]}…, "
                                   f"registered {qc_model.sha256[:12]}…).")
        module = _load(path, device())
        with self._lock:
            self._modules = {k: v for k, v in self._modules.items() if k[0] != qc_model.pk}
            self._modules[key] = module
        return module


loaded = _Loaded()


def _softmax(row: np.ndarray) -> np.ndarray:
    shifted = np.exp(row - row.max())
    return shifted / shifted.sum()


def judge(qc_model, declaration: Declaration, row: np.ndarray, image) -> CheckResult:
    """Compare one image's model output with what its prompt asked for."""
    name, threshold = f"model:{qc_model.name}", declaration.threshold
    base = {"kind": "model", "threshold": threshold}
    if declaration.predicts in CATEGORICAL:
        expected = (image.demographics or {}).get(declaration.predicts)
        if expected not in declaration.labels:
            return CheckResult(name, UNAVAILABLE, f"The model does not know the {declaration.predicts} {expected!r}.",
                               **base)
        probabilities = _softmax(row)
        probability = float(probabilities[declaration.labels.index(expected)])
        predicted = declaration.labels[int(probabilities.argmax())]
        extra = {"expected": expected, "predicted": predicted}
        if probability < threshold:
            return CheckResult(name, FAILED, f"Asked for {declaration.predicts} {expected}; the QC model {qc_model.name} "
                               f"gives it {probability:.2f} (at least {threshold:.2f} needed) and sees {predicted}.",
                               probability, extra=extra, **base)
        return CheckResult(name, PASSED, f"Shows {declaration.predicts} {expected}.", probability, extra=extra, **base)
    if declaration.predicts == "age":
        expected = (image.demographics or {}).get("age")
        if expected is None:
            return CheckResult(name, UNAVAILABLE, "The image has no requested age.", **base)
        predicted = float(row[0])
        error = abs(predicted - float(expected))
        extra = {"expected": expected, "predicted": round(predicted, 1)}
        if error > threshold:
            return CheckResult(name, FAILED, f"Asked for age {expected}; the QC model {qc_model.name} sees "
                               f"{predicted:.0f} (off by {error:.0f} years, at most {threshold:g} accepted).",
                               error, extra=extra, **base)
        return CheckResult(name, PASSED, f"Looks {predicted:.0f} (asked {expected}).", error, extra=extra, **base)
    probabilities = 1.0 / (1.0 + np.exp(-row))
    requested = set(image.findings or [])
    wrong = []
    for label, probability in zip(declaration.labels, probabilities):
        shown, asked = probability >= threshold, label in requested
        if shown != asked:
            wrong.append(f"{label} {'not requested but seen' if shown else 'requested but not seen'} "
                         f"({probability:.2f})")
    extra = {"probabilities": {label: round(float(p), 4) for label, p in zip(declaration.labels, probabilities)}}
    if wrong:
        return CheckResult(name, FAILED, f"QC model {qc_model.name}: {'; '.join(wrong)}.", float(len(wrong)),
                           extra=extra, **base)
    return CheckResult(name, PASSED, "Shows the requested findings.", 0.0, extra=extra, **base)


def classify(qc_models, images, arrays) -> tuple[dict[int, list[CheckResult]], dict[int, tuple]]:
    """Every configured QC model on a round's images: one result per image and model, "unavailable"
    with the reason when a model cannot run; and each image's features from the encoder, if one is
    registered (``{pk: (qc_model, vector)}``)."""
    results: dict[int, list[CheckResult]] = {image.pk: [] for image in images}
    features: dict[int, tuple] = {}
    for qc_model in qc_models:
        declaration = Declaration.of(qc_model)
        encoder = qc_model.predicts == "features"
        prefix, kind = ("encoder", "encoder") if encoder else ("model", "model")
        try:
            module = loaded.get(qc_model)
            outputs = run(module, prepare(arrays, declaration, device()), declaration)
        except ModelUnavailable as exc:
            logger.warning("QC model %s unavailable: %s", qc_model, exc)
            for image in images:
                results[image.pk].append(CheckResult(f"{prefix}:{qc_model.name}", UNAVAILABLE,
                                                     f"QC model {qc_model.name} unavailable: {exc}", kind=kind))
            continue
        for image, row in zip(images, outputs):
            if encoder:
                features[image.pk] = (qc_model, np.asarray(row, dtype=np.float32))
            else:
                results[image.pk].append(judge(qc_model, declaration, row, image))
    return results, features

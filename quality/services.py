"""Quality control: the check generation runs on every image (built-in checks and the model version's
QC classifiers), its verdicts and their audit events, and the registration of QC models."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from cxr_platform.audit.services import record_event
from generation.models import Cohort, SyntheticImage
from generation.pipeline import DELIVER_FLAGGED, DROP, PASS, REGENERATE, ImageCheck, Outcome

from . import checks as builtin
from . import sealing
from .classifiers import Declaration, ModelUnavailable, check_declaration, check_model_file, classify
from .models import QCModel, QualityVerdict

Decision = QualityVerdict.Decision
DECISIONS = {PASS: Decision.PASSED, REGENERATE: Decision.REGENERATED, DELIVER_FLAGGED: Decision.DELIVERED_FLAGGED,
             DROP: Decision.DROPPED}


def max_attempts() -> int:
    return max(1, int(getattr(settings, "QC_MAX_ATTEMPTS", 3)))


def default_policy() -> str:
    value = str(getattr(settings, "QC_AFTER_LAST_ATTEMPT", Cohort.QualityPolicy.DELIVER))
    return value if value in Cohort.QualityPolicy.values else Cohort.QualityPolicy.DELIVER


def parse_policy(data) -> str:
    """The cohort's after-last-attempt policy from a create request's ``quality_policy``; the default
    when the request leaves it out. Sent empty or null it is refused like any other wrong value: the
    API's schema allows only the two choices."""
    if "quality_policy" not in data:
        return default_policy()
    value = data["quality_policy"]
    if not isinstance(value, str) or value not in Cohort.QualityPolicy.values:
        raise ValidationError({"quality_policy": [
            f"Choose {' or '.join(repr(v) for v in Cohort.QualityPolicy.values)}: what happens to a patient whose "
            "image still fails quality control on its last attempt (deliver it flagged, or drop it and report it)."
        ]})
    return value


def active_qc_models(model_version) -> list[QCModel]:
    return list(QCModel.objects.filter(model_version=model_version, status=QCModel.Status.ACTIVE).order_by("name"))


def _earlier_fingerprints(cohort: Cohort, exclude: set[int]) -> list[np.ndarray]:
    rows = (QualityVerdict.objects.filter(cohort=cohort, decision__in=[Decision.PASSED, Decision.DELIVERED_FLAGGED])
            .exclude(image_id__in=exclude).values_list("fingerprint", flat=True))
    return [np.frombuffer(bytes(blob), dtype=np.float16).astype(np.float32) for blob in rows if blob]


class QualityCheck(ImageCheck):
    """Built-in checks and the model version's QC classifiers on each decoded image; an image fails when
    any check fails. A configured classifier that cannot run marks its check unavailable, with the
    reason, in every verdict (the image is not failed for it, and the quality card counts it)."""

    name = "quality"

    rejected_status = SyntheticImage.Status.REJECTED

    def max_attempts(self, cohort):
        return max_attempts()

    def after_last_attempt(self, cohort):
        return DROP if cohort.quality_policy == Cohort.QualityPolicy.DROP else DELIVER_FLAGGED

    def exhausted_reason(self, image):
        return f"Failed quality control on all {image.attempt + 1} attempts."

    def evaluate(self, cohort, images, round_):
        started = time.monotonic()
        arrays = {}
        for image in images:
            picture = round_.pictures.get(image.pk)
            if picture is None:
                with image.image.open("rb") as handle:
                    from PIL import Image

                    picture = Image.open(handle)
                    picture.load()
            arrays[image.pk] = (np.asarray(picture.convert("L") if picture.mode != "L" else picture),
                                picture.info.get("nonfinite_values"))
        ordered = sorted(images, key=lambda i: (i.index, i.attempt))
        model_results, features = classify(active_qc_models(cohort.model_version), ordered,
                                           [arrays[i.pk][0] for i in ordered])
        earlier = _earlier_fingerprints(cohort, {i.pk for i in images})
        outcomes = {}
        for image in ordered:
            pixels, nonfinite = arrays[image.pk]
            vector = builtin.fingerprint(pixels)
            stack = np.stack(earlier) if earlier else None
            results = builtin.builtin_checks(pixels, nonfinite_values=nonfinite, earlier=stack, vector=vector)
            results += model_results[image.pk]
            failed = [r for r in results if r.failed]
            if not any(r.failed for r in results if r.kind == "builtin"):
                earlier.append(vector)  # later images of this round are compared with it too
            outcomes[image.pk] = Outcome(failed=bool(failed), reason=" ".join(r.reason for r in failed),
                                         data={"results": results, "vector": vector,
                                               "features": features.get(image.pk)})
        seconds = (time.monotonic() - started) / max(len(images), 1)
        for outcome in outcomes.values():
            outcome.data["seconds"] = seconds
            outcome.data["generation_seconds"] = round_.seconds_per_image
        return outcomes

    def record(self, cohort, image, outcome, decision):
        results, encoded = outcome.data["results"], outcome.data.get("features")
        failed = [r.name for r in results if r.status == builtin.FAILED]
        unavailable = [r.name for r in results if r.status == builtin.UNAVAILABLE]
        verdict, _ = QualityVerdict.objects.update_or_create(image=image, defaults={
            "cohort": cohort,
            "attempt": image.attempt,
            "passed": not outcome.failed,
            "decision": DECISIONS[decision],
            "checks": [r.as_dict() for r in results],
            "failed_checks": failed,
            "unavailable_checks": unavailable,
            "reason": outcome.reason,
            "generation_seconds": round(outcome.data["generation_seconds"], 4),
            "seconds": round(outcome.data["seconds"], 4),
            "fingerprint": outcome.data["vector"].astype(np.float16).tobytes(),
            "features": encoded[1].tobytes() if encoded else b"",
            "features_encoder": encoded[0] if encoded else None,
        })
        verdict.seal = sealing.compute(verdict)  # in the transaction that wrote the verdict
        QualityVerdict.objects.filter(pk=verdict.pk).update(seal=verdict.seal)
        if outcome.failed:
            record_event("synthetic_image.qc_failed", target=image, details={
                "cohort": cohort.pk, "index": image.index, "attempt": image.attempt, "checks": failed,
                "decision": DECISIONS[decision], "reason": outcome.reason[:1000],
            })


# --- Registration -------------------------------------------------------------------------------


def reference_root():
    from pathlib import Path

    return Path(getattr(settings, "QC_REFERENCE_ROOT", None) or Path(settings.MODEL_ROOT) / "quality-references")


def register_qc_model(*, model_version, name: str, path, sha256: str, predicts: str, labels=(), input_size: int,
                      threshold: float = 0.0, mean: float = 0.5, std: float = 0.5, reference_dir=None,
                      actor=None) -> QCModel:
    """Register a local TorchScript QC model with a model version after checking it: the file's SHA-256
    must be the configured one, it must load, run on a probe batch and return the declared shape.
    An encoder (``predicts="features"``) needs ``reference_dir``, a folder of real radiographs whose
    features are stored (features only) as the reference for fidelity and diversity.
    Raises ValidationError naming what is wrong; nothing is stored then."""
    from pathlib import Path

    from .classifiers import encode_folder

    sha256 = str(sha256 or "").strip().lower()
    errors = {}
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        errors["sha256"] = ["Give the file's SHA-256 as 64 hexadecimal digits (sha256sum FILE)."]
    if not str(name or "").strip():
        errors["name"] = ["Give the QC model a name."]
    declaration = Declaration(str(predicts), tuple(labels or ()), int(input_size), float(mean), float(std),
                              float(threshold))
    problems = check_declaration(declaration, (model_version.defaults or {}).get("findings"))
    if problems:
        errors["declaration"] = problems
    if predicts == "features" and not reference_dir:
        errors["reference_dir"] = ["An encoder needs a folder of real radiographs (reference_dir) to compare with."]
    if QCModel.objects.filter(model_version=model_version, name=name).exists():
        errors["name"] = [f"Model version {model_version} already has a QC model named {name!r}."]
    if errors:
        raise ValidationError(errors)
    path = Path(path).expanduser().resolve()
    reference = None
    try:
        outputs = check_model_file(path, sha256, declaration)
        if predicts == "features":
            declaration = dataclasses.replace(declaration, feature_dim=outputs)
            reference = encode_folder(path, sha256, declaration, reference_dir)
    except (ModelUnavailable, OSError) as exc:
        raise ValidationError({"path": [f"Refused: {exc}"]}) from None
    with transaction.atomic():
        qc_model = QCModel.objects.create(
            model_version=model_version, name=name, path=str(path), sha256=sha256, predicts=declaration.predicts,
            labels=list(declaration.labels), input_size=declaration.input_size, mean=declaration.mean,
            std=declaration.std, threshold=declaration.threshold,
            feature_dim=outputs if predicts == "features" else 0, registered_by=actor,
        )
        if reference is not None:
            from cxr_platform.hashing import sha256_path

            target = reference_root() / f"model-version-{model_version.pk}-{qc_model.pk}-{name}.npy"
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, reference)
            qc_model.reference_path, qc_model.reference_count = str(target), int(reference.shape[0])
            qc_model.reference_sha256 = sha256_path(target)
            qc_model.save(update_fields=["reference_path", "reference_count", "reference_sha256"])
        record_event("qc_model.registered", actor=actor, target=model_version, details={
            "qc_model": qc_model.pk, "name": name, "predicts": declaration.predicts, "labels": list(declaration.labels),
            "sha256": sha256, "threshold": declaration.threshold, "reference_images": qc_model.reference_count,
        })
    return qc_model

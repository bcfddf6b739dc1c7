"""One screened image as a single DICOM file, for the cohort page's viewer.

It is the same instance a DICOM export of the cohort would contain (exports.dicom's reference
encoder, the same facts, hence the same UIDs), so a file downloaded here and the one in a later
export are interchangeable in a PACS. Like an export it leaves the platform: it needs the Export
tier, a screening verdict that is intact and *passed*, and it is audited.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cxr_platform.audit.services import record_event

from .models import SyntheticImage
from .selectors import open_image_file


class NotReleasable(Exception):
    """The image has no intact *passed* screening verdict: it must not leave the platform."""


def dicom_file_name(image: SyntheticImage) -> str:
    return f"SYNTHETIC-C{image.cohort_id}-{image.index:06d}.dcm"


def image_dicom_bytes(image: SyntheticImage, *, actor) -> bytes:
    from exports.dicom import ImageFacts, image_dataset
    from exports.services import installation, uid_namespace
    from pydicom.filewriter import dcmwrite
    from screening.models import ScreeningRecord
    from screening.selectors import unreleasable_image_ids

    if unreleasable_image_ids([image.pk]):
        raise NotReleasable("This image has no intact screening verdict, so it cannot be downloaded as DICOM.")
    cohort, model_version = image.cohort, image.cohort.model_version
    identity = installation()
    score = ScreeningRecord.objects.filter(image=image).values_list("score", flat=True).first()
    facts = ImageFacts(
        namespace=uid_namespace(identity), installation=identity.tag, model_version_id=model_version.pk,
        model_name=model_version.name, model_version=model_version.version, cohort_id=cohort.pk,
        cohort_name=cohort.name, image_id=image.pk, index=image.index, seed=image.seed, prompt=image.prompt,
        demographics=image.demographics, findings=image.findings, sampling=image.sampling,
        created=cohort.created_at, screening_score=score, impression=image.impression,
    )
    with open_image_file(image) as handle, Image.open(handle) as picture:
        pixels = np.asarray(picture if picture.mode == "L" else picture.convert("L"), dtype=np.uint8)
    buffer = io.BytesIO()
    dcmwrite(buffer, image_dataset(facts, pixels), enforce_file_format=True)
    record_event("generation.image_dicom_downloaded", actor=actor, target=image,
                 details={"cohort": cohort.pk, "index": image.index, "sop_instance_uid": facts.sop_instance_uid})
    return buffer.getvalue()

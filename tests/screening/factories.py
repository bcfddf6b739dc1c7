"""Cohorts and synthetic images whose PNG the test chooses (a real image, a near-copy, noise)."""

import io

import numpy as np
from django.core.files.base import ContentFile
from PIL import Image

from generation.models import Cohort, SyntheticImage
from tests.factories import UserFactory


def png_bytes(array: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a float image in [0, 1] (NaN as black)."""
    pixels = np.clip(np.rint(np.nan_to_num(array, nan=0.0) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_cohort(model_version, *, owner=None, size=4, name="Screening test") -> Cohort:
    return Cohort.objects.create(owner=owner or UserFactory(), name=name, model_version=model_version,
                                 seed=7, size=size, status=Cohort.Status.RUNNING)


def make_image(cohort: Cohort, array_or_png, *, index=None, attempt=0, status=SyntheticImage.Status.SCREENING):
    index = cohort.images.count() if index is None else index
    image = SyntheticImage.objects.create(cohort=cohort, index=index, attempt=attempt, seed=1000 + index,
                                          prompt="chest x-ray", status=status)
    data = array_or_png if isinstance(array_or_png, bytes) else png_bytes(array_or_png)
    image.image.save(f"cohorts/{cohort.pk}/{index:06d}-{attempt}.png", ContentFile(data), save=True)
    return image


def noise_image(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random image, like the demo model's output."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 3 * ndimage.gaussian_filter(rng.normal(0, 0.1, (size, size)), 2), 0, 1)

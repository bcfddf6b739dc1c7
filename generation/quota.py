"""The daily image quota: what a user's cohorts hold, reserving it at submission, giving back the unused part."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.utils import timezone

from access.policy import access_policy

from .models import Cohort, SyntheticImage

QUOTA_WINDOW = timedelta(hours=24)
ImageStatus = SyntheticImage.Status


class QuotaExceeded(ValidationError):
    pass


def images_reserved(user, *, now=None) -> int:
    since = (now or timezone.now()) - QUOTA_WINDOW
    used = Cohort.objects.filter(owner=user, submitted_at__gte=since).aggregate(total=Sum("reserved_images"))
    return used["total"] or 0


def lock_submissions_of(user) -> None:
    """Locking the user's row serialises their submissions (quota, idempotency keys)."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()


def reserve_quota(user, size: int) -> None:
    """Refuse ``size`` more images if the quota cannot hold them. Call with the user's row locked."""
    quota, used = access_policy(user).daily_image_quota, images_reserved(user)
    if used + size > quota:
        raise QuotaExceeded(
            {
                "size": [
                    f"This cohort needs {size:,} images but only {max(quota - used, 0):,} of your daily quota of "
                    f"{quota:,} are left (images count for 24 hours from submission)."
                ]
            }
        )


def release_unused_quota(cohort: Cohort) -> None:
    """A cancelled or failed cohort keeps on its owner's quota only what was, or is still being, made.
    Call with the cohort's row locked."""
    cohort.reserved_images = (
        SyntheticImage.objects.filter(cohort=cohort)
        .filter(status__in=[ImageStatus.PASSED, ImageStatus.GENERATING, ImageStatus.SCREENING])
        .count()
    )
    cohort.save(update_fields=["reserved_images", "updated_at"])

"""Which model versions a user may see, use and download."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from access import capabilities as caps
from access.models import Tier
from access.policy import access_policy

from .models import ModelFile, ModelVersion

# Capabilities that make a model version visible to its holder.
USING_CAPABILITIES = (caps.GENERATE, caps.DOWNLOAD_WEIGHTS)


def usable_versions(user) -> QuerySet[ModelVersion]:
    """Versions the user's grants cover for generation or weight downloads (never withdrawn ones)."""
    policy = access_policy(user)
    condition = Q(pk__in=[])
    for capability in USING_CAPABILITIES:
        condition |= Q(pk__in=policy.model_version_filter(capability).values("pk"))
    return ModelVersion.objects.filter(condition).order_by("name", "-registered_at")


def downloadable_versions(user) -> QuerySet[ModelVersion]:
    return access_policy(user).model_version_filter(caps.DOWNLOAD_WEIGHTS).order_by("name", "-registered_at")


def usable_version(user, pk) -> ModelVersion:
    """One version the user may see; 404 otherwise, so ids of others' versions say nothing."""
    version = usable_versions(user).filter(pk=pk).first()
    if version is None:
        raise Http404("No such model version.")
    return version


def model_file_of(model_version: ModelVersion, pk) -> ModelFile:
    model_file = model_version.files.filter(pk=pk).first()
    if model_file is None:
        raise Http404("No such file.")
    return model_file


def covering_tiers(model_version: ModelVersion) -> QuerySet[Tier]:
    """Active tiers whose grants reach this version (a tier with no versions listed covers all)."""
    return (
        Tier.objects.filter(is_active=True)
        .filter(Q(model_versions=model_version) | Q(model_versions__isnull=True))
        .distinct()
        .order_by("ordering", "name")
    )

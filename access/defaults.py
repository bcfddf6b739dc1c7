"""The tiers and agreements every installation starts with (seeded by a data migration,
re-checked by ``seed_demo``; admins edit them afterwards)."""

from . import capabilities as caps

_CORE = [caps.PROFILE, caps.PHYSIONET, caps.TRAINING, caps.AGREEMENTS]

DEFAULT_TIERS = {
    "generate": {
        "name": "Generate",
        "ordering": 1,
        "description": "Generate synthetic cohorts in the browser and download the images that passed screening.",
        "capabilities": [caps.GENERATE],
        "required_credentials": _CORE,
        "quotas": {caps.DAILY_IMAGES: 500},
        "requires_research_plan": False,
        "approvals_required": 1,
    },
    "export": {
        "name": "Export",
        "ordering": 2,
        "description": "Larger cohorts, DICOM export with signed manifests, and the REST API.",
        "capabilities": [caps.GENERATE, caps.EXPORT_DICOM, caps.API],
        "required_credentials": _CORE,
        "quotas": {caps.DAILY_IMAGES: 20000},
        "requires_research_plan": False,
        "approvals_required": 1,
    },
    "weights": {
        "name": "Weights",
        "ordering": 3,
        "description": "Download the model weights. Needs every credential and a research plan; "
        "two different reviewers must approve.",
        "capabilities": [caps.DOWNLOAD_WEIGHTS],
        "required_credentials": [*_CORE, caps.RESEARCH_PLAN],
        "quotas": {},
        "requires_research_plan": True,
        "approvals_required": 2,
    },
}

DEFAULT_AGREEMENTS = {
    "mimic-cxr-dua": {
        "title": "MIMIC-CXR data use agreement, as it applies to RoentGen and its outputs",
        "text": """\
RoentGen was trained on MIMIC-CXR, which PhysioNet shares under the PhysioNet Credentialed Health Data
Use Agreement 1.5.0. The model weights and the images it generates are derived from that data, so the
same agreement governs them. By signing, I agree that:

1. I will not attempt to identify any individual or institution from the model, its weights or its outputs,
   and I will not try to recover training images from the model.
2. I will not share the model weights, or access to this platform, with anyone. Each person who uses them
   signs this agreement themselves.
3. I will use the model and its outputs only for lawful scientific research, and never for clinical
   decisions about a patient. Generated images are synthetic and are marked as such; I will keep that mark.
4. I will keep my PhysioNet credentialing and my human-subjects training current, and I will tell the
   platform's reviewers if either lapses.
5. If I publish work that uses the model or its outputs, I will cite RoentGen and MIMIC-CXR and say that
   the images are synthetic.
6. I will report any suspected memorized or identifiable image to the platform's reviewers at once.
""",
    },
    "platform-terms": {
        "title": "cxr-platform terms of use",
        "text": """\
1. My account is for me alone. I keep my password and API tokens secret and revoke a token I no longer need.
2. The platform records what I do (logins, requests, generations, downloads and exports) in a
   tamper-evident audit log that the research group's data-governance office may review.
3. The research group may suspend or revoke my access at any time, for example if my credentials lapse or
   if I break the data use agreement.
4. The platform is provided as is, without any warranty; it is not a medical device.
""",
    },
}


def seed_defaults(Tier, Agreement, AgreementVersion) -> None:
    """Create the default tiers and agreements that do not exist yet (matched by slug; existing rows
    are the admins' and stay as they are). Takes the model classes so the data migration can pass
    its historical models."""
    import hashlib

    from django.utils import timezone

    for slug, spec in DEFAULT_TIERS.items():
        Tier.objects.get_or_create(slug=slug, defaults=dict(spec))
    for slug, spec in DEFAULT_AGREEMENTS.items():
        agreement, created = Agreement.objects.get_or_create(slug=slug, defaults={"title": spec["title"]})
        if created:
            AgreementVersion.objects.create(
                agreement=agreement,
                number=1,
                text=spec["text"],
                sha256=hashlib.sha256(spec["text"].encode("utf-8")).hexdigest(),
                published_at=timezone.now(),
            )

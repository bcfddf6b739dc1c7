"""What every export carries about quality control: the quality card as JSON and in plain words, and
the data card's sentence on how often the QC models agreed with the labels."""

from __future__ import annotations

import json

from generation.models import Cohort, SyntheticImage

from .models import QualityVerdict
from .selectors import card_text, quality_card

CARD_JSON, CARD_TEXT = "quality-card.json", "quality-card.md"


def package_files(cohort_id: int) -> dict[str, bytes]:
    """``quality-card.json`` and ``quality-card.md`` for an export of the cohort; a cohort that is not in
    the database (a package written from elsewhere) gets a card that says so."""
    cohort = Cohort.objects.select_related("model_version").filter(pk=cohort_id).first()
    if cohort is None:
        card = {"cohort": cohort_id, "available": False,
                "reason": "This cohort is not in the platform's database, so there is no quality-control record."}
        text = f"# Quality card: cohort {cohort_id}\n\n{card['reason']}\n"
    else:
        card = quality_card(cohort)
        text = card_text(card)
    return {CARD_JSON: (json.dumps(card, indent=1, sort_keys=True) + "\n").encode("utf-8"),
            CARD_TEXT: text.encode("utf-8")}


def labels_note(cohort_id: int) -> str:
    """How often the QC models agreed with the delivered images' labels, or that none checked them."""
    delivered = QualityVerdict.objects.filter(cohort_id=cohort_id, image__status=SyntheticImage.Status.PASSED)
    judged = agreed = 0
    for checks in delivered.values_list("checks", flat=True):
        for check in checks:
            if check.get("kind") == "model" and check.get("status") in ("passed", "failed"):
                judged += 1
                agreed += check["status"] == "passed"
    if not judged:
        return ("A generative model does not always show what it was asked for; no quality-control classifier has "
                "checked these images against their labels. Treat them as weak labels.")
    return (f"A generative model does not always show what it was asked for. Quality-control classifiers checked "
            f"the delivered images against their labels: they agreed in {agreed} of {judged} checks "
            f"({agreed / judged:.0%}); `{CARD_TEXT}` has the details per subgroup. Treat the labels as weak labels.")

import uuid
"""``{% export_section cohort as section %}``: what templates/exports/_cohort_exports.html shows,
so any page that has a cohort can include it."""

from django import template

from access import capabilities as caps
from access.policy import access_policy

from .. import selectors, services

register = template.Library()


@register.simple_tag(takes_context=True)
def export_section(context, cohort):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or cohort.owner_id != user.pk:
        return {"allowed": False, "exports": []}
    allowed = access_policy(user).can(caps.EXPORT_DICOM, cohort.model_version)
    return {
        "form_token": uuid.uuid4().hex,  # one per rendering: a second POST of this form is a repeat
        "allowed": allowed,
        "exportable": selectors.exportable_images(cohort).count() if allowed else 0,
        "finished": cohort.is_terminal,
        "exports": list(selectors.exports_of_cohort(user, cohort)[:10]) if allowed else [],
        "retention": _duration(services.retention().total_seconds()),
        "destinations": list(selectors.destinations_for(user)) if allowed else [],
        "deliveries": _deliveries(user, cohort) if allowed else [],
    }


def _deliveries(user, cohort) -> list[dict]:
    """The user's latest deliveries of this cohort's exports, with the failed instances' reasons."""
    out = []
    for delivery in selectors.deliveries_of_cohort(user, cohort)[:20]:
        failed = delivery.failed_count and delivery.status not in ("queued", "sending")
        out.append({"delivery": delivery,
                    "reasons": selectors.failure_reasons(delivery) if failed else [],
                    "failures": list(selectors.failed_instances(delivery, 20)) if failed else []})
    return out


def _duration(seconds: float) -> str:
    """``7 days``, ``1 day``, ``12 hours``: how a person says a retention period."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{round(seconds)} seconds"

"""Template context shared by every page: the environment banner and the navigation.

The navigation shows only what the access policy lets the user do, so a researcher
never sees a link that would answer "permission denied".
"""

from django.conf import settings
from django.urls import NoReverseMatch, reverse

# (label, url name, who sees it): a capability name, "staff", or None for every signed-in user.
NAV_ITEMS = [
    ("Access", "access-dashboard", None),
    ("Cohorts", "cohort-list", "generate"),
    ("Models", "model-list", None),
    ("Review", "review-queue", "staff"),
    ("Certificates", "review-certificates", "staff"),
    ("Screening", "screening-quarantine", "staff"),
]


def _nav_items(user, policy) -> list[dict]:
    items = []
    for label, url_name, needs in NAV_ITEMS:
        if needs == "staff" and not user.is_staff:
            continue
        if needs not in (None, "staff") and not policy.can(needs):
            continue
        try:
            items.append({"label": label, "url": reverse(url_name)})
        except NoReverseMatch:
            continue  # a page not installed in this deployment
    return items


def platform(request):
    """``nav_items`` for the top bar, and ``show_api_tokens``: the "API tokens" link appears only
    to users whose access policy includes the API capability (a tier that allows the REST API)."""
    from access import capabilities as caps
    from access.policy import access_policy

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"ENVIRONMENT": settings.ENVIRONMENT, "nav_items": [], "show_api_tokens": False}
    policy = access_policy(user)
    return {"ENVIRONMENT": settings.ENVIRONMENT, "nav_items": _nav_items(user, policy),
            "show_api_tokens": policy.can(caps.API)}

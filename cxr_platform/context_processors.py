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


def _nav_items(user) -> list[dict]:
    from access.policy import access_policy

    policy = access_policy(user)
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
    user = getattr(request, "user", None)
    nav = _nav_items(user) if user is not None and user.is_authenticated else []
    return {"ENVIRONMENT": settings.ENVIRONMENT, "nav_items": nav}

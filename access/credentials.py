"""Which credentials a user holds now. Each check is a small function so that the
access policy, the dashboard ("what is missing") and reviewers see the same answer."""

from __future__ import annotations

from . import capabilities as caps


def current_credentials(user, *, now=None) -> dict[str, bool]:
    # Filled in by the access workflow (profile, PhysioNet check, training certificate,
    # signed current agreements, research plan).
    return {name: False for name in caps.CREDENTIALS}

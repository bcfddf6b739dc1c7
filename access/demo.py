"""Demo accounts for `make run`."""

import secrets

from django.contrib.auth import get_user_model

DEMO_ACCOUNTS = [
    # username, e-mail, staff, superuser
    ("researcher", "researcher@example.org", False, False),
    ("reviewer", "reviewer@example.org", True, False),
    ("admin", "admin@example.org", True, True),
]


def seed_demo(stdout) -> None:
    User = get_user_model()
    for username, email, staff, superuser in DEMO_ACCOUNTS:
        if User.objects.filter(username=username).exists():
            stdout.write(f"Demo account '{username}' exists (password unchanged).")
            continue
        password = secrets.token_urlsafe(9)
        user = User(username=username, email=email, is_staff=staff, is_superuser=superuser, email_verified=True)
        user.set_password(password)
        user.save()
        stdout.write(f"Demo account '{username}' created with password: {password}")

"""Generate a cohort from a JSON specification, through the same services as the API."""

import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation import selectors, services
from generation.specification import with_default_preset


def _messages(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


class Command(BaseCommand):
    help = "Generate a synthetic cohort for USER from SPEC.json (the API's create JSON); prints progress and the cohort id."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username of the cohort's owner (quota and access are theirs).")
        parser.add_argument("--spec", required=True, help="Path to the JSON specification (as the API takes it; without \"preset\" the balanced preset fills the shares not given).")
        parser.add_argument("--inline", action="store_true", help="Run the batches in this process instead of the broker.")
        parser.add_argument("--no-wait", action="store_true", help="Submit and return without following progress.")

    def handle(self, *args, **options):
        try:
            user = get_user_model().objects.get(username=options["user"], is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No active user {options['user']!r}.") from None
        path = Path(options["spec"])
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        try:
            cohort = services.request_cohort(user=user, data=with_default_preset(data), enqueue=not options["inline"])
        except ValidationError as exc:
            raise CommandError(f"Specification refused: {_messages(exc)}") from None
        except PermissionDenied as exc:
            raise CommandError(str(exc) or "Not allowed.") from None
        self.stdout.write(f"Cohort {cohort.pk} submitted: {cohort.size} images, seed {cohort.seed}.")
        notice = None if options["inline"] else selectors.cohort_progress(cohort)["notice"]
        if notice:
            self.stdout.write(notice)
        if options["inline"]:
            services.run_cohort_inline(cohort, on_progress=lambda: self._report(cohort))
        elif not options["no_wait"]:
            while True:
                self._report(cohort)  # refreshes the cohort
                if cohort.is_terminal:
                    break
                time.sleep(2)
        cohort.refresh_from_db()
        self.stdout.write(f"Cohort {cohort.pk}: {cohort.status}.")
        if cohort.error:
            self.stdout.write(cohort.error)
        self.stdout.write(str(cohort.pk))

    def _report(self, cohort):
        cohort.refresh_from_db()
        p = selectors.cohort_progress(cohort)
        self.stdout.write(
            f"  {p['percent']:5.1f}%  passed {p['passed']}/{p['size']}  failed {p['failed']}  "
            f"flagged by screening {p['flagged']}  [{p['status']}]"
        )

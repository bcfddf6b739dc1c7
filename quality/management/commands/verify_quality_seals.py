from django.core.management.base import BaseCommand, CommandError

from quality.models import QualityVerdict
from quality.sealing import sealed_ok


class Command(BaseCommand):
    help = "Report every quality verdict whose seal does not match its fields (changed outside the platform)."

    def handle(self, *args, **options):
        broken = [v for v in QualityVerdict.objects.order_by("pk").iterator() if not sealed_ok(v)]
        for verdict in broken:
            self.stdout.write(f"verdict {verdict.pk} (image {verdict.image_id}, cohort {verdict.cohort_id}): "
                              "seal does not match")
        if broken:
            raise CommandError(f"{len(broken)} quality verdict(s) were changed outside the platform.")
        self.stdout.write(self.style.SUCCESS("Every quality verdict's seal matches."))

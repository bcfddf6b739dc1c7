"""python manage.py verify_export PATH [--public-key FILE]"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exports import signing


class Command(BaseCommand):
    help = ("Check an export package (folder or zip): the Ed25519 signature of manifest.json and the "
            "SHA-256 of every file. Names each file that was changed, removed or added; exits 1 if any was. "
            "Recipients elsewhere use the package's own verify.py with the published key.")

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--public-key", help="PEM public key to check against (default: this platform's).")

    def handle(self, *args, path, public_key, **options):
        target = Path(path)
        if not target.exists():
            raise CommandError(f"{target} does not exist.")
        pem = Path(public_key).read_text() if public_key else None
        try:
            result = signing.verify_package(target, public_key_pem_text=pem)
        except signing.SigningKeyError as error:
            raise CommandError(str(error)) from None
        for problem in result.problems:
            self.stdout.write(problem)
        if not result.ok:
            raise CommandError(f"Verification FAILED: {len(result.problems)} problem(s), "
                               f"{result.checked} file(s) checked.", returncode=1)
        self.stdout.write(f"OK: signature valid, {result.checked} files match the manifest.")

from django.core.management.base import BaseCommand, CommandError

from registry.services import RegistrationError, register_model_version

# Files below this size hash in a blink; progress is shown only for the big ones.
PROGRESS_FROM_BYTES = 64 * 1024 * 1024


class Command(BaseCommand):
    help = (
        "Register a model version from a local directory in diffusers layout: check that it loads offline, "
        "hash every file, record the manifest, model card and generation defaults."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help='Model name, e.g. "RoentGen-v2"')
        parser.add_argument("version", help='Version label, e.g. "2.0"')
        parser.add_argument("directory", help="Directory holding model_index.json and the component folders")

    def handle(self, *args, name, version, directory, **options):
        shown: dict[str, int] = {}

        def progress(path, done, size):
            if size < PROGRESS_FROM_BYTES:
                return
            percent = 100 * done // size
            if shown.get(path) != percent:
                shown[path] = percent
                self.stdout.write(f"\rHashing {path}: {percent:3d}% of {size / 2**30:.2f} GiB", ending="")
                self.stdout.flush()
                if done == size:
                    self.stdout.write("")

        self.stdout.write(f"Checking {directory} and hashing its files…")
        try:
            model_version = register_model_version(name=name, version=version, directory=directory, progress=progress)
        except RegistrationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {model_version} (id {model_version.pk}): {model_version.files.count()} files, "
                f"{model_version.total_size:,} bytes."
            )
        )

"""python manage.py export_cohort COHORT_ID --out DIR [--png] [--transfer-syntax jpegls] [--zip]"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exports import services
from exports.dicom import TRANSFER_SYNTAXES
from exports.package import zip_package
from generation.models import Cohort


class Command(BaseCommand):
    help = "Write the DICOM export package of a cohort's screened images into a folder (and optionally a zip)."

    def add_arguments(self, parser):
        parser.add_argument("cohort_id", type=int)
        parser.add_argument("--out", required=True, help="Folder to create (must be absent or empty).")
        parser.add_argument("--png", action="store_true", help="Include PNG copies of the images.")
        parser.add_argument("--transfer-syntax", choices=sorted(TRANSFER_SYNTAXES), default=None,
                            help="explicit (Explicit VR Little Endian), jpegls (JPEG-LS Lossless) or rle "
                                 "(RLE Lossless); default: EXPORT_TRANSFER_SYNTAX.")
        parser.add_argument("--zip", help="Also write the package as a zip (stored, no compression) here.")
        parser.add_argument("--workers", type=int, default=None, help="Encoder threads (default: EXPORT_WORKERS).")

    def handle(self, *args, cohort_id, out, png, transfer_syntax, zip, workers, **options):
        verbosity = options.get("verbosity", 1)
        cohort = Cohort.objects.select_related("model_version").filter(pk=cohort_id).first()
        if cohort is None:
            raise CommandError(f"No cohort {cohort_id}.")
        out_dir = Path(out)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise CommandError(f"{out_dir} is not empty.")
        syntax = transfer_syntax or services.setting("EXPORT_TRANSFER_SYNTAX", "explicit")

        def progress(done, total):
            if verbosity > 1:
                self.stderr.write(f"{done}/{total}")

        result = services.write_cohort_package(cohort, out_dir, include_png=png, transfer_syntax=syntax,
                                               created_by="manage.py export_cohort", on_progress=progress,
                                               workers=workers)
        from cxr_platform.audit.services import record_event

        record_event("export.written", actor=None, target=cohort, actor_username="manage.py",
                     details={"out": str(out_dir), "images": result.image_count})
        if zip:
            with open(zip, "wb") as handle:
                zip_package(result.root, handle, top=out_dir.name or "export")
        self.stdout.write(f"Wrote {result.image_count} images ({result.files} files) to {out_dir}; "
                          f"manifest SHA-256 {result.manifest_sha256}.")

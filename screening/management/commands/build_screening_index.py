from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion
from screening import engine
from screening.services import build_screening_index


def find_model_version(value: str) -> ModelVersion:
    """A model version by primary key, "name:version" or "name version"."""
    if value.isdigit():
        found = ModelVersion.objects.filter(pk=int(value)).first()
    else:
        name, _, version = value.replace(":", " ").rpartition(" ")
        found = ModelVersion.objects.filter(name=name.strip(), version=version.strip()).first() if name else None
    if found is None:
        raise CommandError(f'No model version "{value}" (give its id or "name:version").')
    return found


class Command(BaseCommand):
    help = (
        "Build the memorization-screening index of a model version from its training radiographs "
        "(DICOM, PNG or JPEG, any bit depth, nested folders) and calibrate it on held-out radiographs. "
        "Each image's patient comes from --subjects, the DICOM PatientID or MIMIC-CXR's pXX/pXXXXXXXX/sXXXXXXXX/ "
        "layout. Ends with a report: what was indexed, what was skipped and why. Resumable: run the same "
        "command again after an interruption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model-version", required=True, help='Model version id or "name:version"')
        parser.add_argument("--train", required=True, help="Folder of the training radiographs")
        parser.add_argument("--holdout", help="Folder of held-out radiographs of other patients (calibration)")
        parser.add_argument("--directory", help="Where to store the index (default: SCREENING_INDEX_ROOT/<version>)")
        parser.add_argument("--workers", type=int, default=1,
                            help="Processes that describe the images (default 1; about one per free core)")
        parser.add_argument("--subjects", metavar="FILE",
                            help="CSV with the columns path,subject_id[,study_id]: each image's patient (and study); "
                                 "paths relative to --train/--holdout, or absolute")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar")

    def handle(self, *args, **options):
        model_version = find_model_version(options["model_version"])
        train, holdout = Path(options["train"]), options.get("holdout")
        if not train.is_dir():
            raise CommandError(f"--train {train} is not a folder.")
        if holdout and not Path(holdout).is_dir():
            raise CommandError(f"--holdout {holdout} is not a folder.")
        subjects = options.get("subjects")
        if subjects and not Path(subjects).is_file():
            raise CommandError(f"--subjects {subjects} is not a file.")
        if not 1 <= options["workers"] <= 64:
            raise CommandError("--workers must be between 1 and 64.")
        if not holdout:
            self.stderr.write(self.style.WARNING(
                "No --holdout: the index cannot be calibrated, and screening refuses to run until it is rebuilt "
                "with held-out radiographs."))
        self.stdout.write(f"Building the screening index of {model_version} from {train}…")
        try:
            index = build_screening_index(
                model_version, train, holdout, directory=options.get("directory"), workers=options["workers"],
                subjects_file=subjects, progress=not options["no_progress"],
                log=lambda message: self.stdout.write(message),
            )
        except (FileNotFoundError, ValueError, engine.IndexNotReady, engine.StageBUnavailable) as exc:
            raise CommandError(str(exc)) from None
        calibration = index.calibration.get("stage_a") or {}
        self.stdout.write(self.style.SUCCESS(
            f"Index ready in {index.directory}: {index.train_count:,} training and {index.holdout_count:,} held-out "
            f"images indexed, {index.calibration.get('skipped_count', 0)} file(s) skipped (reasons above)."))
        if index.threshold is not None:
            self.stdout.write(
                f"Calibrated threshold {index.threshold:.4f} for at most {calibration.get('target_fpr', 0.001):.1%} "
                f"false positives ({calibration.get('method')}); held-out images flagged: "
                f"{calibration.get('holdout_flagged')} of {calibration.get('holdout_n')}.")

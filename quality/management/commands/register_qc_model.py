from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from quality.services import register_qc_model
from registry.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Register a local TorchScript quality-control classifier with a model version. The file must have the "
        "given SHA-256, load, run on a probe batch and return the declared number of outputs; it is never "
        "downloaded. See docs/quality.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("model_version", type=int, help="Id of the model version")
        parser.add_argument("name", help="A short name, e.g. sex-classifier")
        parser.add_argument("path", help="The TorchScript file")
        parser.add_argument("--sha256", required=True, help="The file's expected SHA-256 (sha256sum FILE)")
        parser.add_argument("--predicts", required=True, choices=["sex", "age", "race", "view", "findings", "features"],
                            help="What it predicts; features: an encoder for fidelity and diversity")
        parser.add_argument("--labels", default="",
                            help="The outputs in order, comma-separated (e.g. F,M or pleural_effusion,cardiomegaly); "
                                 "none for age")
        parser.add_argument("--input-size", type=int, required=True, help="Square input size in pixels")
        parser.add_argument("--mean", type=float, default=0.5, help="Normalisation: (x / 255 - mean) / std")
        parser.add_argument("--std", type=float, default=0.5)
        parser.add_argument("--threshold", type=float, default=0.0,
                            help="Probability the requested class / finding needs; for age the largest error in "
                                 "years; not used by an encoder")
        parser.add_argument("--reference-dir", default=None,
                            help="For an encoder: a folder of real radiographs whose features (only) are stored as "
                                 "the reference for fidelity and diversity")

    def handle(self, *args, **options):
        model_version = ModelVersion.objects.filter(pk=options["model_version"]).first()
        if model_version is None:
            raise CommandError(f"No model version with id {options['model_version']}.")
        labels = [label.strip() for label in options["labels"].split(",") if label.strip()]
        try:
            qc_model = register_qc_model(
                model_version=model_version, name=options["name"], path=options["path"], sha256=options["sha256"],
                predicts=options["predicts"], labels=labels, input_size=options["input_size"], mean=options["mean"],
                std=options["std"], threshold=options["threshold"], reference_dir=options["reference_dir"],
            )
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
            raise CommandError(f"Not registered. {problems}") from None
        self.stdout.write(self.style.SUCCESS(
            f"Registered QC model {qc_model.name} (id {qc_model.pk}) for {model_version}: predicts "
            f"{qc_model.predicts} {qc_model.labels or ''}, threshold {qc_model.threshold:g}."
        ))

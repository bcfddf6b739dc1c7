import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from screening.evaluation import evaluate, target_report


class Command(BaseCommand):
    help = (
        "Measure screening: build an index from --train (calibrated on --holdout), make near-copies of the "
        "training images with realistic edits, and report detection rates, AUROC, the held-out false-positive "
        "rate and seconds per image (JSON with --json)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--train", required=True)
        parser.add_argument("--holdout", required=True)
        parser.add_argument("--json", dest="json_file", help="Write the results to this file")
        parser.add_argument("--model-version", help='Model version (id or "name:version") whose VAE makes the '
                                                    "round-trip family")
        parser.add_argument("--vae-dir", help="Or: a diffusers model directory whose vae/ makes the round trip")
        parser.add_argument("--vae-size", type=int,
                            help="Round-trip resolution in px (default: the model version's image height, else the "
                                 "VAE's sample size): the resolution the model decodes its images at")
        parser.add_argument("--limit", type=int, help="Use only the first N training images (and N held-out images "
                                                      "as the non-copies)")
        parser.add_argument("--families", help="Comma-separated edit families (default: all)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--scale", default="4,16",
                            help="Index-size check: rebuild the index with distractors at these multiples of its size "
                                 "and report how the held-out patients' best scores move (default 4,16; '' to skip)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        vae_dir, vae_size = options.get("vae_dir"), options.get("vae_size")
        if options.get("model_version"):
            from .build_screening_index import find_model_version

            version = find_model_version(options["model_version"])
            vae_dir = version.directory
            vae_size = vae_size or (version.defaults or {}).get("height")
        if vae_size is not None and not 8 <= vae_size <= 2048:
            raise CommandError("--vae-size must be between 8 and 2048 px.")
        for name in ("train", "holdout"):
            if not Path(options[name]).is_dir():
                raise CommandError(f"--{name} {options[name]} is not a folder.")
        families = [f.strip() for f in options["families"].split(",")] if options.get("families") else None
        try:
            scale = tuple(int(f) for f in options["scale"].split(",") if f.strip())
        except ValueError:
            raise CommandError("--scale takes whole numbers separated by commas, e.g. 4,16.") from None
        if any(f < 2 or f > 1000 for f in scale):
            raise CommandError("--scale factors must be between 2 and 1000.")
        try:
            result = evaluate(options["train"], options["holdout"], vae_dir=vae_dir, vae_size=vae_size, limit=options.get("limit"),
                              seed=options["seed"], families=families, progress=not options["no_progress"],
                              scale_factors=scale)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise CommandError(str(exc)) from None
        for line in target_report(result):
            self.stdout.write(line)
        if options.get("json_file"):
            Path(options["json_file"]).write_text(json.dumps(result, indent=2))
            self.stdout.write(f"Wrote {options['json_file']}")
        else:
            self.stdout.write(json.dumps(result))

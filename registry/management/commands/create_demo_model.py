from django.core.management.base import BaseCommand

from registry.demo import create_demo_model


class Command(BaseCommand):
    help = "Write a tiny Stable-Diffusion-architecture pipeline with random weights to DIR (diffusers layout)."

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, directory, seed, **options):
        path = create_demo_model(directory, seed=seed)
        self.stdout.write(self.style.SUCCESS(f"Demo model written to {path}"))

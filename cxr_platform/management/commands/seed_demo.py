"""Demo data for `make run`: accounts, access tiers, the demo model, its screening index.

Idempotent: running it again changes nothing that exists. Each app seeds its
own part from a ``seed_demo(stdout)`` function in its ``demo`` module.
"""

import importlib

from django.core.management.base import BaseCommand

SEEDERS = ["access.demo", "registry.demo", "screening.demo", "generation.demo"]


class Command(BaseCommand):
    help = "Create demo accounts, tiers, the demo model and its screening index (idempotent)."

    def handle(self, *args, **options):
        for module_name in SEEDERS:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    continue
                raise
            seed = getattr(module, "seed_demo", None)
            if seed is not None:
                seed(self.stdout)

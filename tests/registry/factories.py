"""Registry fixtures. ``register_demo`` is what other apps' tests use to get a model version."""

from registry.demo import demo_generation_defaults
from registry.models import ModelVersion


def register_demo(directory, *, name: str = "RoentGen-demo", version: str = "1.0", status: str = "active") -> ModelVersion:
    """Register the demo pipeline in ``directory`` as a model version."""
    # The registry app replaces this with its register_model service once it validates and hashes files.
    return ModelVersion.objects.create(
        name=name, version=version, directory=str(directory), status=status, defaults=demo_generation_defaults()
    )

"""Registry fixtures. ``register_demo`` is what other apps' tests use to get a model version."""

from registry import services
from registry.models import ModelVersion


def register_demo(directory, *, name: str = "RoentGen-demo", version: str = "1.0", status: str = "active") -> ModelVersion:
    """Register the demo pipeline in ``directory`` through the real registration service
    (validated, hashed), then move it to ``status``."""
    model_version = services.register_model_version(name=name, version=version, directory=directory)
    if status != model_version.status:
        model_version = services.change_status(model_version=model_version, status=status, actor=None, reason="test fixture")
    return model_version

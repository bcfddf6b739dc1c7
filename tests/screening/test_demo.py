"""`make run` seeding: the demo model version gets a screening index, once."""

import io
import json
from pathlib import Path

import pytest

from registry.demo import DEMO_NAME, DEMO_VERSION
from screening import engine
from screening.demo import seed_demo
from screening.models import ScreeningIndex
from tests.registry.factories import register_demo

pytestmark = pytest.mark.django_db


def test_seed_demo_builds_the_index_from_real_radiographs_once(demo_model_dir, cxr_public_dir, settings, tmp_path):
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    settings.SCREENING_DEMO_TRAIN_DIR = str(cxr_public_dir)
    settings.VAR_DIR = tmp_path / "var"
    model_version = register_demo(demo_model_dir, name=DEMO_NAME, version=DEMO_VERSION)
    out = io.StringIO()
    seed_demo(out)
    index = ScreeningIndex.objects.get(model_version=model_version)
    assert index.status == "ready" and index.train_count == 30 and index.holdout_count == 30
    built_at = index.built_at
    seed_demo(out)
    index.refresh_from_db()
    assert index.built_at == built_at
    assert "is ready" in out.getvalue()


def test_seed_demo_rebuilds_an_index_of_an_older_format(demo_model_dir, cxr_public_dir, settings, tmp_path):
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    settings.SCREENING_DEMO_TRAIN_DIR = str(cxr_public_dir)
    settings.VAR_DIR = tmp_path / "var"
    model_version = register_demo(demo_model_dir, name=DEMO_NAME, version=DEMO_VERSION)
    seed_demo(io.StringIO())
    index = ScreeningIndex.objects.get(model_version=model_version)
    meta_path = Path(index.directory) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": engine.FORMAT_VERSION - 1}))
    out = io.StringIO()
    seed_demo(out)
    index.refresh_from_db()
    assert "is ready" not in out.getvalue()
    assert index.status == "ready" and engine.is_current(index.directory)
    assert json.loads(meta_path.read_text())["format"] == engine.FORMAT_VERSION


def test_without_real_radiographs_the_demo_model_renders_the_index_images(demo_model_dir, settings, tmp_path):
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    empty = tmp_path / "no-images"
    empty.mkdir()
    settings.SCREENING_DEMO_TRAIN_DIR = str(empty)
    settings.VAR_DIR = tmp_path / "var"
    model_version = register_demo(demo_model_dir, name=DEMO_NAME, version=DEMO_VERSION)
    out = io.StringIO()
    seed_demo(out)
    index = ScreeningIndex.objects.get(model_version=model_version)
    assert index.status == "ready" and index.threshold is not None
    assert index.train_count + index.holdout_count == 24
    assert "rendering" in out.getvalue()

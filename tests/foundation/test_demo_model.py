"""The demo model loads like real RoentGen weights and generates on the CPU."""

import json

import numpy as np
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from django.core.management import call_command


def test_create_demo_model_writes_a_diffusers_pipeline(tmp_path):
    target = tmp_path / "demo"
    call_command("create_demo_model", str(target))
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (target / component).is_dir(), component
    assert list((target / "unet").glob("*.safetensors"))
    assert not (target / "_tokenizer_source").exists()


def test_demo_model_generates_a_64x64_image_on_the_cpu(demo_model_dir):
    pipeline = DiffusionPipeline.from_pretrained(demo_model_dir, local_files_only=True)
    assert isinstance(pipeline, StableDiffusionPipeline)
    pipeline.to("cpu")
    pipeline.set_progress_bar_config(disable=True)
    result = pipeline(
        "PA view chest radiograph of a 63 year old woman with cardiomegaly",
        height=64,
        width=64,
        num_inference_steps=4,
        generator=torch.Generator("cpu").manual_seed(7),
    )
    image = result.images[0]
    assert image.size == (64, 64)
    pixels = np.asarray(image)
    assert pixels.shape == (64, 64, 3)
    assert pixels.std() > 0  # an actual picture, not a blank canvas


def test_demo_model_is_deterministic_for_a_seed(demo_model_dir):
    pipeline = DiffusionPipeline.from_pretrained(demo_model_dir, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)

    def generate(seed):
        return np.asarray(
            pipeline("chest radiograph", height=64, width=64, num_inference_steps=4,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        )

    assert np.array_equal(generate(3), generate(3))
    assert not np.array_equal(generate(3), generate(4))

"""The generation engine with the real demo pipeline on the CPU (64 px, 4 steps)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from generation.inference import Engine, GenerationCancelled, PromptTooLong, SamplingParams, get_engine
from registry.demo import demo_generation_defaults
from registry.services import ModelFilesChanged
from tests.registry.factories import register_demo

PROMPTS = [
    "63 year old WHITE female. Small left pleural effusion.",
    "45 year old BLACK male. Mild cardiomegaly.",
    "71 year old ASIAN female. No acute cardiopulmonary process.",
]


@pytest.fixture
def params(demo_model_version):
    return SamplingParams.from_defaults(demo_model_version.defaults, {})


@pytest.fixture
def private_model_version(db, demo_model_dir, tmp_path):
    """A model version registered from a private copy of the demo pipeline, which a test may change."""
    target = tmp_path / "private-model"
    shutil.copytree(demo_model_dir, target)
    return register_demo(target, name="RoentGen-private")


def pixels(image) -> np.ndarray:
    return np.asarray(image)


# --- SamplingParams --------------------------------------------------------------------------------


def test_sampling_params_come_from_the_model_versions_defaults():
    params = SamplingParams.from_defaults(demo_generation_defaults(), {})
    assert params.as_dict() == {
        "scheduler": "PNDM", "steps": 4, "guidance_scale": 3.0, "height": 64, "width": 64, "dtype": "float32",
    }


def test_overrides_within_the_bounds_replace_the_defaults_and_serialise():
    params = SamplingParams.from_defaults(
        demo_generation_defaults(), {"steps": 50, "guidance_scale": 4, "height": 128, "scheduler": "DDIM"}
    )
    assert (params.steps, params.guidance_scale, params.height, params.width, params.scheduler) == (50, 4.0, 128, 64, "DDIM")
    assert SamplingParams.from_dict(json.loads(json.dumps(params.as_dict()))) == params


def test_sampling_params_are_frozen():
    params = SamplingParams.from_defaults(demo_generation_defaults(), {})
    with pytest.raises(AttributeError):
        params.steps = 10


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"steps": 151}, "sampling.steps"),
        ({"steps": 0}, "sampling.steps"),
        ({"steps": 2.5}, "sampling.steps"),
        ({"steps": True}, "sampling.steps"),
        ({"guidance_scale": 30}, "sampling.guidance_scale"),
        ({"guidance_scale": "lots"}, "sampling.guidance_scale"),
        ({"height": 2048}, "sampling.height"),
        ({"width": 100}, "sampling.width"),
        ({"scheduler": "Magic"}, "sampling.scheduler"),
    ],
)
def test_overrides_outside_the_bounds_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        SamplingParams.from_defaults(demo_generation_defaults(), overrides)


def test_unknown_or_fixed_sampling_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="Unknown sampling parameter.*eta"):
        SamplingParams.from_defaults(demo_generation_defaults(), {"eta": 0.5})
    with pytest.raises(ValueError, match="Unknown sampling parameter.*dtype"):
        SamplingParams.from_defaults(demo_generation_defaults(), {"dtype": "float16"})


# --- Tokens --------------------------------------------------------------------------------------------


def test_token_counts_include_the_begin_and_end_tokens_and_the_limit_is_77(demo_model_version):
    engine = get_engine(demo_model_version)
    assert engine.max_prompt_tokens == 77
    assert engine.count_tokens("") == 2
    short = engine.count_tokens("63 year old WHITE female. Small left pleural effusion.")
    assert 2 < short <= 77
    assert engine.count_tokens("effusion " * 100) > 77


def test_counting_tokens_loads_only_the_tokenizer(demo_model_version):
    engine = get_engine(demo_model_version)
    engine.count_tokens(PROMPTS[0])
    assert engine.pipeline is None and engine.device is None


def test_a_prompt_over_the_token_limit_is_refused_not_truncated(demo_model_version, params):
    engine = get_engine(demo_model_version)
    with pytest.raises(PromptTooLong, match="more than the text encoder's limit of 77"):
        engine.generate(["effusion " * 100], [1], params)


def test_importing_the_engine_imports_neither_torch_nor_diffusers():
    code = "import sys, generation.inference; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# --- Generating ------------------------------------------------------------------------------------


def test_images_are_8_bit_grayscale_at_the_requested_size(demo_model_version, params):
    images = get_engine(demo_model_version).generate(PROMPTS[:2], [1, 2], params)
    assert [(i.mode, i.size) for i in images] == [("L", (64, 64))] * 2
    assert pixels(images[0]).std() > 0


def test_an_image_is_what_the_plain_pipeline_makes_for_its_seed(demo_model_version, demo_model_dir, params):
    image = get_engine(demo_model_version).generate([PROMPTS[0]], [42], params)[0]
    pipeline = DiffusionPipeline.from_pretrained(demo_model_dir, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    plain = pipeline(
        PROMPTS[0], height=64, width=64, num_inference_steps=4, guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(42),
    ).images[0].convert("L")
    assert np.array_equal(pixels(image), pixels(plain))


def test_an_image_depends_on_its_seed_not_on_its_batch_or_position(demo_model_version, params):
    engine = get_engine(demo_model_version)
    alone = engine.generate([PROMPTS[1]], [7], params)[0]
    in_batch = engine.generate(PROMPTS, [3, 7, 11], params)
    reordered = engine.generate([PROMPTS[1], PROMPTS[0]], [7, 3], params)
    assert np.abs(pixels(alone).astype(int) - pixels(in_batch[1]).astype(int)).max() <= 1
    assert np.abs(pixels(alone).astype(int) - pixels(reordered[0]).astype(int)).max() <= 1
    assert np.abs(pixels(in_batch[0]).astype(int) - pixels(reordered[1]).astype(int)).max() <= 1
    assert not np.array_equal(pixels(in_batch[1]), pixels(engine.generate([PROMPTS[1]], [8], params)[0]))


def test_big_batches_are_chunked_without_changing_the_images(demo_model_version, params):
    whole = Engine(demo_model_version).generate(PROMPTS, [1, 2, 3], params)
    chunked = Engine(demo_model_version, options={"max_batch": 2}).generate(PROMPTS, [1, 2, 3], params)
    for a, b in zip(whole, chunked, strict=True):
        assert np.abs(pixels(a).astype(int) - pixels(b).astype(int)).max() <= 1


def test_another_scheduler_can_be_chosen(demo_model_version):
    engine = get_engine(demo_model_version)
    pndm = SamplingParams.from_defaults(demo_model_version.defaults, {})
    ddim = SamplingParams.from_defaults(demo_model_version.defaults, {"scheduler": "DDIM"})
    a, b = engine.generate([PROMPTS[0]], [5], pndm)[0], engine.generate([PROMPTS[0]], [5], ddim)[0]
    assert not np.array_equal(pixels(a), pixels(b))
    assert np.array_equal(pixels(a), pixels(engine.generate([PROMPTS[0]], [5], pndm)[0]))


def test_the_speed_ups_for_cuda_keep_the_images(demo_model_version, params):
    """SDPA attention, fused QKV and channels_last (what the engine applies on CUDA), run on the CPU."""
    plain = Engine(demo_model_version).generate(PROMPTS[:2], [1, 2], params)
    fast = Engine(demo_model_version, options={"channels_last": True, "fuse_qkv": True}).generate(PROMPTS[:2], [1, 2], params)
    for a, b in zip(plain, fast, strict=True):
        assert np.abs(pixels(a).astype(int) - pixels(b).astype(int)).max() <= 2


# --- Cancelling ------------------------------------------------------------------------------------


def test_cancelling_stops_between_denoising_steps(demo_model_version, params):
    engine = get_engine(demo_model_version)
    engine.load()
    unet_calls, checks = [], []
    handle = engine.pipeline.unet.register_forward_hook(lambda *args: unet_calls.append(1))

    def should_cancel():
        checks.append(1)
        return len(checks) >= 3  # before the batch, after step 1, then cancel after step 2

    try:
        with pytest.raises(GenerationCancelled):
            engine.generate(PROMPTS[:2], [1, 2], params, should_cancel=should_cancel)
    finally:
        handle.remove()
    assert len(checks) == 3 and len(unet_calls) == 2  # 2 of 4 steps ran
    # The engine is still usable afterwards.
    assert len(engine.generate(PROMPTS[:1], [1], params, should_cancel=lambda: False)) == 1


def test_a_call_cancelled_before_it_starts_runs_no_denoising_step(demo_model_version, params):
    engine = get_engine(demo_model_version)
    engine.load()
    unet_calls = []
    handle = engine.pipeline.unet.register_forward_hook(lambda *args: unet_calls.append(1))
    try:
        with pytest.raises(GenerationCancelled):
            engine.generate(PROMPTS[:2], [1, 2], params, should_cancel=lambda: True)
    finally:
        handle.remove()
    assert unet_calls == []


def test_should_cancel_is_asked_after_every_step(demo_model_version, params):
    engine = get_engine(demo_model_version)
    engine.load()
    unet_calls, checks = [], []
    handle = engine.pipeline.unet.register_forward_hook(lambda *args: unet_calls.append(1))
    try:
        engine.generate(PROMPTS[:1], [1], params, should_cancel=lambda: checks.append(1) and False)
    finally:
        handle.remove()
    assert len(unet_calls) >= params.steps and len(checks) == 1 + len(unet_calls)


# --- One engine per model version per process -------------------------------------------------------


def test_a_model_version_is_loaded_once_per_process(demo_model_version, private_model_version, params):
    engine = get_engine(demo_model_version)
    assert get_engine(demo_model_version) is engine
    engine.generate(PROMPTS[:1], [1], params)
    pipeline = engine.pipeline
    get_engine(demo_model_version).generate(PROMPTS[:1], [2], params)
    assert engine.loads == 1 and engine.pipeline is pipeline and engine.device == "cpu"
    assert get_engine(private_model_version) is not engine


def test_a_model_version_whose_files_changed_is_refused(private_model_version, params):
    config = private_model_version.directory + "/unet/config.json"
    with open(config, "a") as handle:
        handle.write("\n")
    engine = get_engine(private_model_version)
    with pytest.raises(ModelFilesChanged, match="unet/config.json changed"):
        engine.generate(PROMPTS[:1], [1], params)
    assert engine.pipeline is None


def test_a_loaded_engine_refuses_once_its_files_change(private_model_version, params):
    engine = get_engine(private_model_version)
    engine.generate(PROMPTS[:1], [1], params)
    with open(private_model_version.directory + "/unet/config.json", "a") as handle:
        handle.write("\n")
    with pytest.raises(ModelFilesChanged):
        engine.generate(PROMPTS[:1], [1], params)


def test_a_forked_worker_process_does_not_inherit_the_parents_engines(demo_model_version):
    import os

    engine = get_engine(demo_model_version)
    pid = os.fork()
    if pid == 0:  # the child: a fresh engine, never the parent's pipeline (CUDA state does not survive a fork)
        os._exit(0 if get_engine(demo_model_version) is not engine else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get_engine(demo_model_version) is engine

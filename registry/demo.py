"""A tiny pipeline with Stable Diffusion's architecture and random weights.

It is what ``make run`` serves and what the tests generate with: every piece
RoentGen has (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, a
CLIPTokenizer, a PNDM scheduler), saved with ``save_pretrained`` so it loads
through exactly the code that loads real RoentGen weights. Its vocabulary is
written here, so nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from .vocabulary import prompt_words, roentgen_v2_defaults

DEMO_IMAGE_SIZE = 64
DEMO_STEPS = 4


def _bytes_to_unicode() -> dict[int, str]:
    # The byte-to-character table of GPT-2/CLIP byte-level BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_tokenizer_files(directory: Path) -> int:
    """Write vocab.json and merges.txt for a small CLIP BPE vocabulary; returns its size.

    Single characters (with and without the end-of-word mark) cover any text;
    merges for the words of the default prompts keep those prompts short.
    """
    vocab: dict[str, int] = {}

    def add(token: str):
        if token not in vocab:
            vocab[token] = len(vocab)

    chars = list(_bytes_to_unicode().values())
    for ch in chars:
        add(ch)
    for ch in chars:
        add(ch + "</w>")
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in prompt_words():
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        current = symbols[0]
        for symbol in symbols[1:]:
            pair = (current, symbol)
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            current = current + symbol
            add(current)
    add("<|startoftext|>")
    add("<|endoftext|>")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return len(vocab)


def demo_generation_defaults() -> dict:
    defaults = roentgen_v2_defaults()
    defaults.update({"steps": DEMO_STEPS, "height": DEMO_IMAGE_SIZE, "width": DEMO_IMAGE_SIZE, "dtype": "float32"})
    return defaults


def create_demo_model(directory: str | Path, *, seed: int = 0) -> Path:
    """Build and save the tiny pipeline in ``directory`` (diffusers layout)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    tokenizer_dir = directory / "_tokenizer_source"
    vocab_size = write_tokenizer_files(tokenizer_dir)
    # transformers 5 takes ``vocab``/``merges``; older releases took ``vocab_file``/``merges_file``.
    tokenizer = CLIPTokenizer(
        vocab=str(tokenizer_dir / "vocab.json"), merges=str(tokenizer_dir / "merges.txt"), model_max_length=77
    )
    if len(tokenizer) < vocab_size:
        raise RuntimeError("The demo tokenizer did not load its vocabulary")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=DEMO_IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=DEMO_IMAGE_SIZE,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
        set_alpha_to_one=False,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)
    for leftover in tokenizer_dir.iterdir():
        leftover.unlink()
    tokenizer_dir.rmdir()
    (directory / "generation_defaults.json").write_text(json.dumps(demo_generation_defaults(), indent=2))
    (directory / "README.md").write_text(
        "# Demo model (random weights)\n\n"
        "A tiny pipeline with Stable Diffusion's architecture and random weights, built locally by "
        "`python manage.py create_demo_model`. It produces noise-like images, not radiographs: it exists so that "
        "the platform can be run and tested without the real RoentGen weights.\n"
    )
    return directory


DEMO_NAME = "RoentGen-demo"
DEMO_VERSION = "1.0"


def seed_demo(stdout) -> None:
    """For ``make run``: build the demo model under MODEL_ROOT/demo if missing and register it (idempotent)."""
    from django.conf import settings

    from .models import ModelVersion
    from .services import register_model_version

    if ModelVersion.objects.filter(name=DEMO_NAME, version=DEMO_VERSION).exists():
        stdout.write(f"Demo model {DEMO_NAME} {DEMO_VERSION} is registered.")
        return
    directory = Path(settings.MODEL_ROOT) / "demo"
    if not (directory / "model_index.json").exists():
        stdout.write(f"Building the demo model in {directory}…")
        create_demo_model(directory)
    model_version = register_model_version(name=DEMO_NAME, version=DEMO_VERSION, directory=directory)
    stdout.write(f"Registered demo model {model_version} ({model_version.total_size:,} bytes).")

"""Generation throughput: the plain diffusers way versus the platform's worker path.

On a CUDA GPU (the default when one is visible) it builds a pipeline with the architecture of Stable
Diffusion 2.1-base (RoentGen-v2's base: UNet 320/640/1280/1280 with linear projections and
cross-attention 1024, the SD VAE, an OpenCLIP ViT-H-sized text encoder: 1024 hidden, 23 layers, 16 heads)
with random weights and a locally written tokenizer vocabulary, saves it with ``save_pretrained`` and
measures images per second at 512×512, 75 PNDM steps, guidance 3:

(a) plain: ``from_pretrained(..., torch_dtype=float16)``, ``.to("cuda")``, one ``pipe(prompt)`` per image;
(b) platform: the worker's path from a batch to stored files — ``generation.inference`` engine
    (bf16, batched classifier-free guidance, SDPA, fused QKV, channels_last, optional torch.compile,
    batches of ``--batch``), then 8-bit grayscale PNG encoding and a write to a storage directory.

It prints both, their ratio and the fraction of the GPU's dense bf16 peak reached, counting the FLOPs of
one image with torch's FLOP counter (UNet × 2 for guidance × steps, plus the text encoder and the VAE
decoder) and, for comparison, the issue's nominal 123 TFLOP per image.

Without a GPU (``--device cpu``, the default then) it runs the same measurement with the tiny demo model
(64 px, 4 steps) so the script is exercised everywhere; those figures say nothing about GPU speed.

    .venv/bin/python bench/generation.py                       # GPU if present, else CPU demo
    .venv/bin/python bench/generation.py --device cuda --images 64 --plain-images 8 --batch 16
    .venv/bin/python bench/generation.py --device cpu --demo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import types
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NOMINAL_TFLOP_PER_IMAGE = 123.0  # the figure: ~0.80 TFLOP per UNet eval × 2 (CFG) × 75 steps + VAE
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s.
PEAKS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
         "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
PROMPTS = [
    "63 year old WHITE female. Small left pleural effusion.",
    "45 year old BLACK male. Mild cardiomegaly.",
    "71 year old ASIAN female. No acute cardiopulmonary process.",
    "52 year old HISPANIC male. Moderate bilateral pleural effusions with adjacent atelectasis.",
]


def build_sd21_base(directory: Path) -> Path:
    """SD 2.1-base architecture with random weights, saved in diffusers layout (fp16 files)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from registry.demo import write_tokenizer_files

    torch.manual_seed(0)
    source = directory / "_tokenizer_source"
    write_tokenizer_files(source)
    tokenizer = CLIPTokenizer(vocab=str(source / "vocab.json"), merges=str(source / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
        set_alpha_to_one=False,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.to(torch.float16)
    pipeline.save_pretrained(directory, safe_serialization=True)
    shutil.rmtree(source)
    return directory


def peak_tflops(device: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "given"
    if not device.startswith("cuda"):
        return None, "n/a on CPU"
    import torch

    name = torch.cuda.get_device_name(device)
    for key, value in PEAKS.items():
        if key in name:
            return value, name
    return None, name


def count_flops(pipeline, batch_prompt: str, height: int, width: int) -> dict:
    """FLOPs of one UNet evaluation (batch 1), one text encoding and one VAE decode, by torch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = pipeline.unet.device, pipeline.unet.dtype
    # torch counts the CUDA attention kernels; count the CPU one the same way (Q·Kᵀ and P·V).
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, **kwargs):
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    cpu_sdpa._get_raw = True
    mapping = {}
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = cpu_sdpa
    unet = getattr(pipeline.unet, "_orig_mod", pipeline.unet)
    latents = torch.randn(1, unet.config.in_channels, height // 8, width // 8, device=device, dtype=dtype)
    tokens = pipeline.tokenizer([batch_prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
    figures = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            states = pipeline.text_encoder(tokens.to(device))[0]
        figures["text_encoder"] = counter.get_total_flops()
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            unet(latents, 10, encoder_hidden_states=states.to(dtype))
        figures["unet"] = counter.get_total_flops()
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            pipeline.vae.decode(latents / pipeline.vae.config.scaling_factor)
        figures["vae_decode"] = counter.get_total_flops()
    return figures


def _flops(value: float) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if value >= scale:
            return f"{value / scale:.3f} {unit}"
    return f"{value:.0f} FLOP"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def bench_plain(model_dir: Path, device: str, *, images: int, steps: int, size: int, guidance: float) -> dict:
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = DiffusionPipeline.from_pretrained(model_dir, torch_dtype=dtype, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe(PROMPTS[0], height=size, width=size, num_inference_steps=steps, guidance_scale=guidance)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for i in range(images):
        pipe(PROMPTS[i % len(PROMPTS)], height=size, width=size, num_inference_steps=steps, guidance_scale=guidance)
    synchronize(device)
    elapsed = time.perf_counter() - started
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"images": images, "seconds": elapsed, "images_per_s": images / elapsed}


class _BenchEngineMixin:
    def verify(self):  # no database here; the worker verifies registered files (see docs/inference.md)
        pass


def bench_platform(model_dir: Path, device: str, *, images: int, steps: int, size: int, guidance: float,
                   batch: int, compile_unet: bool, dtype: str, storage: Path) -> tuple[dict, object]:
    """The worker's path: engine.generate on batches, then PNG encoding and a file write per image."""
    import torch

    from generation.inference import Engine, SamplingParams

    version = types.SimpleNamespace(pk=0, directory=str(model_dir), defaults={
        "scheduler": "PNDM", "steps": steps, "guidance_scale": guidance, "height": size, "width": size,
        "dtype": dtype, "max_prompt_tokens": 77, "bounds": {},
    })
    engine_class = type("BenchEngine", (_BenchEngineMixin, Engine), {})
    options = {"max_batch": batch}
    if device.startswith("cuda"):
        options["compile"] = compile_unet
    engine = engine_class(version, device=device, options=options)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    params = SamplingParams.from_defaults(version.defaults, {})
    started = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - started
    # Warm-up on the batch shapes the timed run uses (compiles them when torch.compile is on).
    shapes = {min(batch, images)} | ({images % batch} if images % batch else set())
    started = time.perf_counter()
    for n in sorted(shapes):
        engine.generate([PROMPTS[0]] * n, list(range(n)), params)
    synchronize(device)
    warmup_s = time.perf_counter() - started
    storage.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for first in range(0, images, batch):
        count = min(batch, images - first)
        prompts = [PROMPTS[(first + i) % len(PROMPTS)] for i in range(count)]
        pictures = engine.generate(prompts, [1000 + first + i for i in range(count)], params, should_cancel=lambda: False)
        for i, picture in enumerate(pictures):  # as generation.services._store_png
            buffer = BytesIO()
            picture.convert("L").save(buffer, format="PNG")
            (storage / f"{first + i:06d}-0.png").write_bytes(buffer.getvalue())
    synchronize(device)
    elapsed = time.perf_counter() - started
    figures = {"images": images, "batch": batch, "seconds": elapsed, "images_per_s": images / elapsed,
               "load_s": load_s, "warmup_s": warmup_s, "compiled": engine.compiled,
               "dtype": str(engine.dtype).replace("torch.", "")}
    if device.startswith("cuda"):
        figures["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return figures, engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if visible), cuda, cuda:N or cpu")
    parser.add_argument("--demo", action="store_true", help="the tiny demo model (default on the CPU)")
    parser.add_argument("--full", action="store_true", help="the SD-2.1-base architecture even on the CPU (slow)")
    parser.add_argument("--model-dir", type=Path, help="an existing diffusers directory instead of building one")
    parser.add_argument("--images", type=int, help="images for the platform path (default 64 on GPU, 8 on CPU)")
    parser.add_argument("--plain-images", type=int, help="images for the plain path (default 8 on GPU, 4 on CPU)")
    parser.add_argument("--batch", type=int, help="images per engine call (default 16 on GPU, 8 on CPU)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 75; 4 with --demo)")
    parser.add_argument("--size", type=int, help="pixels (default 512; 64 with --demo)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"], help="platform path on CUDA")
    parser.add_argument("--compile", default="on", choices=["on", "off", "both"],
                        help="torch.compile the UNet on the platform path (both: measure each)")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU (default: by its name)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device.startswith("cuda")
    if not gpu:  # both paths with the engine's CPU thread count (GENERATION_CPU_THREADS, default 1)
        torch.set_num_threads(max(1, int(os.environ.get("GENERATION_CPU_THREADS", 1))))
    demo = args.demo or (not gpu and not args.full and args.model_dir is None)
    steps = args.steps or (4 if demo else 75)
    size = args.size or (64 if demo else 512)
    images = args.images or (64 if gpu else 8)
    plain_images = args.plain_images or (8 if gpu else 4)
    batch = args.batch or (16 if gpu else 8)

    workdir = Path(tempfile.mkdtemp(prefix="cxr-bench-generation-"))
    try:
        started = time.perf_counter()
        if args.model_dir:
            model_dir = args.model_dir
        elif demo:
            from registry.demo import create_demo_model

            model_dir = create_demo_model(workdir / "model")
        else:
            model_dir = build_sd21_base(workdir / "model")
        model = "demo (random weights)" if demo else ("SD-2.1-base architecture, random weights" if not args.model_dir
                                                         else str(args.model_dir))
        print(f"model: {model}; built/located in {time.perf_counter() - started:.1f} s", flush=True)
        device_name = torch.cuda.get_device_name(device) if gpu else f"CPU ({os.cpu_count()} cores, torch "\
            f"{torch.get_num_threads()} threads)"
        print(f"device: {device_name}; torch {torch.__version__}; {size}x{size}, {steps} steps, "
              f"guidance {args.guidance}", flush=True)
        result = {"device": device_name, "model": model, "size": size, "steps": steps, "guidance": args.guidance,
                  "torch": torch.__version__}

        if not args.skip_plain:
            plain = bench_plain(model_dir, device, images=plain_images, steps=steps, size=size, guidance=args.guidance)
            result["plain"] = plain
            print(f"(a) plain ({'fp16' if gpu else 'fp32'}, one pipe(prompt) per image): "
                  f"{plain['images_per_s']:.3f} images/s ({plain['images']} images in {plain['seconds']:.1f} s)",
                  flush=True)

        variants = {"on": [True], "off": [False], "both": [False, True]}[args.compile] if gpu else [False]
        engine = None
        for compile_unet in variants:
            figures, engine = bench_platform(
                model_dir, device, images=images, steps=steps, size=size, guidance=args.guidance, batch=batch,
                compile_unet=compile_unet, dtype=args.dtype, storage=workdir / "storage" / str(compile_unet),
            )
            key = "platform_compiled" if figures["compiled"] else "platform"
            result[key] = figures
            extra = f", peak memory {figures['max_memory_gib']:.1f} GiB" if "max_memory_gib" in figures else ""
            print(f"(b) platform ({figures['dtype']}, batch {batch}, compile "
                  f"{'on' if figures['compiled'] else 'off'}; engine + PNG + file write): "
                  f"{figures['images_per_s']:.3f} images/s ({images} images in {figures['seconds']:.1f} s; "
                  f"load {figures['load_s']:.1f} s, warm-up/compile {figures['warmup_s']:.1f} s{extra})", flush=True)
            if "plain" in result:
                print(f"    ratio platform / plain: {figures['images_per_s'] / result['plain']['images_per_s']:.2f}x",
                      flush=True)
            if compile_unet is not variants[-1]:
                del engine
                if gpu:
                    torch.cuda.empty_cache()

        flops = count_flops(engine.pipeline, PROMPTS[0], size, size)
        scheduler = type(engine.pipeline.scheduler).from_config(engine.pipeline.scheduler.config)
        scheduler.set_timesteps(steps)
        evals = len(scheduler.timesteps)  # PNDM (PLMS) evaluates the UNet steps + 1 times
        per_image = 2 * evals * flops["unet"] + 2 * flops["text_encoder"] + flops["vae_decode"]
        result["flops"] = {**flops, "unet_evals": evals, "per_image": per_image}
        print(f"FLOPs (torch counter): UNet eval {_flops(flops['unet'])} at batch 1, text encoder "
              f"{_flops(flops['text_encoder'])}, VAE decode {_flops(flops['vae_decode'])}; "
              f"per image ({evals} UNet evals for {steps} steps, x 2 for guidance) {_flops(per_image)}", flush=True)
        peak, peak_source = peak_tflops(device, args.peak_tflops)
        best = max((result[k] for k in ("platform", "platform_compiled") if k in result),
                   key=lambda f: f["images_per_s"])
        if peak:
            achieved = best["images_per_s"] * per_image / 1e12
            fraction = achieved / peak
            nominal = best["images_per_s"] * NOMINAL_TFLOP_PER_IMAGE / peak
            result.update({"peak_tflops": peak, "achieved_tflops": achieved, "fraction_of_peak": fraction,
                           "fraction_of_peak_nominal": nominal})
            print(f"best platform path: {achieved:.0f} TFLOP/s = {fraction:.1%} of the {peak:.0f} TFLOP/s dense bf16 "
                  f"peak ({peak_source}); with the issue's nominal {NOMINAL_TFLOP_PER_IMAGE:.0f} TFLOP/image: "
                  f"{nominal:.1%}", flush=True)
        else:
            print(f"fraction of peak: {peak_source}", flush=True)
        if "plain" in result:
            result["ratio"] = best["images_per_s"] / result["plain"]["images_per_s"]
            print(f"best platform / plain: {result['ratio']:.2f}x", flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a stand-in for a real model's VAE, so the VAE-round-trip family of `evaluate_screening` means something
without RoentGen's weights.

The demo model's VAE has random weights: a "round trip" through it returns noise, not a near-copy, so its
detection rate says nothing. This trains a small VAE with Stable Diffusion's layout (8× spatial compression
into 4 latent channels) on radiographs for a few CPU minutes and saves it in diffusers layout (`OUT/vae/`).

It trains on `--size` px patches cut from radiographs scaled to `--scale` px (512, RoentGen's output size)
and records `--scale` as its sample size, so the evaluation makes the round trip at the resolution the model
generates at, as a memorized image would be decoded: a 64×64 latent for a 512 px image. (A round trip of a
whole radiograph shrunk to 64 px, through an 8×8 latent, is far lossier than anything the model does.) Train
it on images the evaluation does not copy (the holdout) so that it is not better on them than a real VAE.
It reconstructs worse than Stable Diffusion's VAE, which makes it a conservative proxy.

    .venv/bin/python scripts/train_vae_proxy.py --images HOLDOUT --check TRAIN --out /tmp/vae-proxy [--steps 1500]
    .venv/bin/python manage.py evaluate_screening --train TRAIN --holdout HOLDOUT --vae-dir /tmp/vae-proxy

It prints the reconstruction PSNR on the training images, and on images it did not see when --check DIR is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_images(directory: Path, size: int) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        raise SystemExit(f"No PNG or JPEG images under {directory}")
    arrays = []
    for path in files:
        with Image.open(path) as picture:
            gray = picture.convert("L").resize((size, size), Image.BICUBIC)
        arrays.append(np.asarray(gray, dtype=np.float32) / 127.5 - 1.0)
    return np.stack(arrays)


def psnr(vae, images: np.ndarray, size: int) -> float:
    import torch
    import torch.nn.functional as F

    errors = []
    with torch.no_grad():
        for image in images:  # one at a time: a 512 px batch of 30 needs gigabytes of activations
            batch = torch.from_numpy(image)[None, None]
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            decoded = vae.decode(vae.encode(batch.repeat(1, 3, 1, 1)).latent_dist.mean).sample
            errors.append(((decoded.mean(1, keepdim=True).clamp(-1, 1) - batch) ** 2).mean().item())
    return 10 * np.log10(4.0 / np.mean(errors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, type=Path, help="radiographs to train on (PNG/JPEG)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="training patch size, px")
    parser.add_argument("--scale", type=int, default=512, help="radiographs are scaled to this size (the round trip's)")
    parser.add_argument("--check", type=Path, help="images not trained on, for the reconstruction figure")
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = load_images(args.images, args.scale)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=4, norm_num_groups=16,
        sample_size=args.scale,
    )
    optimiser = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    full = images.shape[-1]
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        # Random patches at scale 0.8–1.25 and mirror images: the VAE must not just memorise 30 pictures.
        crops = []
        for index in rng.integers(0, len(images), args.batch):
            side = int(args.size * rng.uniform(0.8, 1.25))
            top, left = rng.integers(0, full - side + 1, 2)
            crop = torch.from_numpy(images[index, top:top + side, left:left + side].copy())[None, None]
            if side != args.size:
                crop = torch.nn.functional.interpolate(crop, size=(args.size, args.size), mode="bilinear",
                                                       antialias=True, align_corners=False)
            crops.append(crop.flip(-1) if rng.random() < 0.5 else crop)
        target = torch.cat(crops)
        posterior = vae.encode(target.repeat(1, 3, 1, 1)).latent_dist
        decoded = vae.decode(posterior.sample()).sample
        loss = (decoded - target).abs().mean() + 1e-6 * posterior.kl().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps:
            print(f"step {step:5d}  L1 {loss.item():.4f}  {time.perf_counter() - started:.0f} s", flush=True)
    vae.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(args.out / "vae")
    print(f"reconstruction PSNR at {args.scale} px on training images: {psnr(vae, images, args.scale):.1f} dB")
    if args.check:
        unseen = load_images(args.check, args.scale)
        print(f"reconstruction PSNR at {args.scale} px on unseen images: {psnr(vae, unseen, args.scale):.1f} dB")
    print(f"saved {args.out / 'vae'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

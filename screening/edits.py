"""Realistic edits that turn a training radiograph into a near-copy, for tests and evaluation.

Each function takes a float image in [0, 1] (2-D) and a numpy Generator and returns a float
image in [0, 1]. Families are grouped as in the issue: photometric, geometric, VAE round trip
and composites.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mode="L")


def _from_pil(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("L"), dtype=np.float32) / 255.0


def jpeg(quality: int):
    def edit(image, rng):
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return _from_pil(Image.open(buffer))

    return edit


def gaussian_noise(image, rng):
    sigma = rng.uniform(0.02, 0.05)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 1).astype(np.float32)


def blur(image, rng):
    sigma = rng.uniform(1.0, 2.0) * max(image.shape) / 512.0
    return ndimage.gaussian_filter(image, sigma).astype(np.float32)


def gamma(image, rng):
    value = rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.2, 1.6)])
    return np.power(np.clip(image, 0, 1), value).astype(np.float32)


def contrast(image, rng):
    factor = rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.15, 1.4)])
    brightness = rng.uniform(-0.08, 0.08)
    mean = float(image.mean())
    return np.clip((image - mean) * factor + mean + brightness, 0, 1).astype(np.float32)


def shift(image, rng):
    h, w = image.shape
    dy = rng.uniform(0.05, 0.10) * h * rng.choice([-1, 1])
    dx = rng.uniform(0.05, 0.10) * w * rng.choice([-1, 1])
    return ndimage.shift(image, (dy, dx), order=1, mode="constant", cval=0.0).astype(np.float32)


def rotation(image, rng):
    angle = rng.uniform(5.0, 10.0) * rng.choice([-1, 1])
    return ndimage.rotate(image, angle, reshape=False, order=1, mode="constant", cval=0.0).astype(np.float32)


def crop(image, rng):
    h, w = image.shape
    fraction = rng.uniform(0.80, 0.90)
    ch, cw = int(round(h * fraction)), int(round(w * fraction))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    picture = Image.fromarray(image[top : top + ch, left : left + cw].astype(np.float32), mode="F")
    return np.asarray(picture.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32).clip(0, 1)


def hflip(image, rng):
    return np.ascontiguousarray(image[:, ::-1])


PHOTOMETRIC = {
    "jpeg_q95": jpeg(95),
    "jpeg_q75": jpeg(75),
    "jpeg_q50": jpeg(50),
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "gamma": gamma,
    "contrast": contrast,
}
GEOMETRIC = {"shift": shift, "rotation": rotation, "crop": crop, "hflip": hflip}


def composite(image, rng):
    """One geometric edit, then two photometric ones, then JPEG: the kind of copy a model makes."""
    geometric = list(GEOMETRIC.values())[rng.integers(0, len(GEOMETRIC))]
    photometric = [PHOTOMETRIC[k] for k in rng.choice(["gaussian_noise", "blur", "gamma", "contrast"], 2, replace=False)]
    out = geometric(image, rng)
    for edit in photometric:
        out = edit(out, rng)
    return jpeg(int(rng.integers(50, 96)))(out, rng)


def composite_geometric(image, rng):
    """Crop, rotation and shift together, then noise."""
    return gaussian_noise(shift(rotation(crop(image, rng), rng), rng), rng)


COMPOSITES = {"composite": composite, "composite_geometric": composite_geometric}
GROUPS = {
    **{name: "photometric" for name in PHOTOMETRIC},
    **{name: "geometric" for name in GEOMETRIC},
    **{name: "composite" for name in COMPOSITES},
    "vae_roundtrip": "vae",
}
FAMILIES = {**PHOTOMETRIC, **GEOMETRIC, **COMPOSITES}


class VaeRoundTrip:
    """Encode and decode through a model version's own VAE (diffusers layout, local files only), at
    ``size`` px (default the VAE's sample size): the resolution the model decodes its images at."""

    def __init__(self, model_directory, size: int | None = None):
        import torch
        from diffusers import AutoencoderKL

        self.torch = torch
        self.vae = AutoencoderKL.from_pretrained(str(model_directory), subfolder="vae", local_files_only=True).eval()
        self.size = int(size or self.vae.config.sample_size or 512)

    def __call__(self, image, rng):
        torch = self.torch
        h, w = image.shape
        small = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((self.size, self.size),
                                                                                     Image.Resampling.BOX))
        tensor = torch.from_numpy(small * 2 - 1).float()[None, None].repeat(1, 3, 1, 1)
        with torch.inference_mode():
            latents = self.vae.encode(tensor).latent_dist.mean
            decoded = self.vae.decode(latents).sample[0].mean(0).clamp(-1, 1).numpy()
        out = (decoded + 1) / 2
        return np.asarray(Image.fromarray(out.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR),
                          dtype=np.float32).clip(0, 1)

"""Realistic edits that turn a training radiograph into a near-copy, for tests and evaluation.

Each function takes a float image in [0, 1] (2-D) and a numpy Generator and returns a float
image in [0, 1]. Families are grouped as in the issue: photometric, geometric, polarity and
orientation, annotations, VAE round trip and composites.

They are written from what happens to radiographs (a negative, a wrong PhotometricInterpretation,
an image hung upside down or sideways, burned-in side markers and footers), never from how the
detector works, so that measuring the detector with them is fair.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
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


def invert(image, rng):
    """A negative: what a MONOCHROME1 image read as MONOCHROME2 (or the reverse) looks like."""
    return (1.0 - np.clip(image, 0, 1)).astype(np.float32)


def equalise(image, rng):
    """Histogram equalisation (PIL's ImageOps.equalize on the 8-bit image)."""
    return _from_pil(ImageOps.equalize(_to_pil(image)))


def vflip(image, rng):
    return np.ascontiguousarray(image[::-1, :])


def rotate_quarter(turns: int):
    """A rotation by ``turns`` × 90° counter-clockwise (lossless; width and height swap for 90° and 270°)."""

    def edit(image, rng):
        return np.ascontiguousarray(np.rot90(image, turns))

    return edit


def zoom_out(image, rng, factor: float = 0.8):
    """The whole image shrunk to ``factor`` of its size and pasted somewhere on a black canvas."""
    h, w = image.shape
    sh, sw = int(round(h * factor)), int(round(w * factor))
    small = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((sw, sh), Image.Resampling.BILINEAR))
    top, left = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    out = np.zeros_like(image, dtype=np.float32)
    out[top:top + sh, left:left + sw] = small
    return out.clip(0, 1)


def _font(height: int):
    return ImageFont.load_default(size=max(8, int(height)))


def _burn_text(draw: ImageDraw.ImageDraw, xy, text: str, height: int, fill: int = 255) -> None:
    draw.text(xy, text, fill=fill, font=_font(height))


def markers(image, rng):
    """Burned-in side marker ("R" or "L") near a top corner and "PORTABLE" along the top, in white,
    as X-ray systems and technologists put them on radiographs."""
    picture = _to_pil(image)
    draw = ImageDraw.Draw(picture)
    h, w = image.shape
    size = int(h * rng.uniform(0.06, 0.09))
    margin = int(w * rng.uniform(0.03, 0.08))
    side = str(rng.choice(["R", "L"]))
    corner = margin if rng.random() < 0.5 else w - margin - size
    _burn_text(draw, (corner, int(h * rng.uniform(0.03, 0.08))), side, size)
    label = str(rng.choice(["PORTABLE", "PORTABLE AP", "SUPINE"]))
    small = int(h * rng.uniform(0.035, 0.05))
    _burn_text(draw, (int(w * rng.uniform(0.3, 0.5)), int(h * rng.uniform(0.02, 0.06))), label, small)
    return _from_pil(picture)


def heavy_annotation(image, rng):
    """What a heavily annotated radiograph carries: markers, a block of burned-in text in a top corner
    (institution, an identifier, date and time, as modalities print them), two footer lines
    (technique) and a filled white box (a label or measurement box) somewhere on the image."""
    out = markers(image, rng)
    picture = _to_pil(out)
    draw = ImageDraw.Draw(picture)
    h, w = image.shape
    small = int(h * rng.uniform(0.035, 0.045))
    date = f"{int(rng.integers(2010, 2024))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
    block = ["ST. ELSEWHERE HOSPITAL", f"ID {int(rng.integers(1e6, 1e7))}", date,
             f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}"]
    left = int(w * 0.03) if rng.random() < 0.5 else int(w * 0.6)
    for i, line in enumerate(block):
        _burn_text(draw, (left, int(h * 0.12) + int(i * small * 1.25)), line, small)
    footer = [f"kVp {int(rng.integers(80, 125))}  mAs {rng.uniform(1, 5):.1f}  SID 180 cm",
              f"AP  SEMI-ERECT  {date}"]
    for i, line in enumerate(footer):
        _burn_text(draw, (int(w * 0.04), int(h * 0.97) - int((len(footer) - i) * small * 1.25)), line, small)
    bw, bh = int(w * rng.uniform(0.10, 0.15)), int(h * rng.uniform(0.07, 0.11))
    x, y = int(rng.integers(int(0.1 * w), int(0.9 * w) - bw)), int(rng.integers(int(0.15 * h), int(0.85 * h) - bh))
    draw.rectangle((x, y, x + bw, y + bh), fill=255)
    return _from_pil(picture)


PHOTOMETRIC = {
    "jpeg_q95": jpeg(95),
    "jpeg_q75": jpeg(75),
    "jpeg_q50": jpeg(50),
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "gamma": gamma,
    "contrast": contrast,
    "equalise": equalise,
}
GEOMETRIC = {"shift": shift, "rotation": rotation, "crop": crop, "hflip": hflip, "zoom_out": zoom_out}
# Polarity and orientation: a negative, an image hung upside down or sideways.
ORIENTATION = {"invert": invert, "vflip": vflip, "rot90": rotate_quarter(1),
               "rot180": rotate_quarter(2), "rot270": rotate_quarter(3)}
ANNOTATION = {"markers": markers, "heavy_annotation": heavy_annotation}


def composite(image, rng):
    """One geometric edit, then two photometric ones, then JPEG: the kind of copy a model makes."""
    geometric = (shift, rotation, crop, hflip)[rng.integers(0, 4)]
    photometric = [PHOTOMETRIC[k] for k in rng.choice(["gaussian_noise", "blur", "gamma", "contrast"], 2, replace=False)]
    out = geometric(image, rng)
    for edit in photometric:
        out = edit(out, rng)
    return jpeg(int(rng.integers(50, 96)))(out, rng)


def composite_geometric(image, rng):
    """Crop, rotation and shift together, then noise."""
    return gaussian_noise(shift(rotation(crop(image, rng), rng), rng), rng)


COMPOSITES = {"composite": composite, "composite_geometric": composite_geometric}


# --- Partial copies: part of a training radiograph inside another image ------------------------------
# These take a second image, ``other``, as well: another training image (blends, splices) or a
# radiograph of another patient (patch copies). ``other`` is first brought to the training image's
# size, so the copied part keeps its scale relative to the frame — as in a generated image, which has
# the training images' size and layout.

def _fit(other: np.ndarray, shape) -> np.ndarray:
    other = np.nan_to_num(np.asarray(other, dtype=np.float32), nan=0.0)
    return np.asarray(Image.fromarray(other, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR),
                      dtype=np.float32).clip(0, 1)


def blend(image, rng, other):
    """A 50/50 blend of two training images (what mixing two memorised images looks like)."""
    return (0.5 * image + 0.5 * _fit(other, image.shape)).astype(np.float32)


def splice(image, rng, other):
    """The left half of one training image and the right half of another."""
    out = _fit(other, image.shape)
    half = image.shape[1] // 2
    out[:, :half] = image[:, :half]
    return out


def patch_copy(low: float, high: float):
    """A rectangle of ``low``–``high`` of the image's area (aspect 0.75–1.33), cut from anywhere in
    the training image and pasted anywhere into another patient's radiograph."""

    def edit(image, rng, other):
        out = _fit(other, image.shape)
        h, w = image.shape
        area = rng.uniform(low, high) * h * w
        aspect = rng.uniform(0.75, 1.33)
        ph, pw = min(h, int(round(np.sqrt(area * aspect)))), min(w, int(round(np.sqrt(area / aspect))))
        sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        ty, tx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        out[ty:ty + ph, tx:tx + pw] = image[sy:sy + ph, sx:sx + pw]
        return out

    return edit


# Which second image each partial family takes: another training image, or another patient's.
PARTIAL = {"blend": blend, "splice": splice, "patch_copy_25": patch_copy(0.25, 0.30),
           "patch_copy_50": patch_copy(0.45, 0.50)}
PARTIAL_OTHER = {"blend": "train", "splice": "train", "patch_copy_25": "holdout", "patch_copy_50": "holdout"}
GROUPS = {
    **{name: "photometric" for name in PHOTOMETRIC},
    **{name: "geometric" for name in GEOMETRIC},
    **{name: "orientation" for name in ORIENTATION},
    **{name: "annotation" for name in ANNOTATION},
    **{name: "composite" for name in COMPOSITES},
    **{name: "partial" for name in PARTIAL},
    "vae_roundtrip": "vae",
}
FAMILIES = {**PHOTOMETRIC, **GEOMETRIC, **ORIENTATION, **ANNOTATION, **COMPOSITES, **PARTIAL}


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

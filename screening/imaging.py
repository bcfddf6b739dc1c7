"""Reading radiographs of any format into the canonical arrays screening compares.

Every image (training, holdout, synthetic) goes through the same steps: decode (DICOM with
its rescale, VOI LUT and MONOCHROME1 inversion; PNG/JPEG of any bit depth; RGB/RGBA to
grayscale), normalise intensities to [0, 1] by the image's own 0.5th–99.5th percentiles, and
resize to a fixed square grid. Aspect ratio is not kept: the same mapping applies to every
image, so a copy maps onto its original.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cxr_platform.png import encode_gray_png

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff"}
VERIFY_SIZE = 64  # side of the verification thumbnail kept for every training image
THUMB_SIZE = 32  # side of the small standardised thumbnail (retrieval, within-cohort duplicates)
RETRIEVAL_CROP = 24  # side of its centre that the retrieval descriptor keeps (before PCA)


class UnreadableImage(ValueError):
    """The file is not an image this module can decode."""


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def list_images(root: str | Path) -> list[Path]:
    """Every image under ``root`` (nested folders), sorted; DICOM files without a suffix included."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No such folder: {root}")
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES or (suffix == "" and _is_dicom(path)):
            found.append(path)
    return found


MAX_PIXELS = 80_000_000  # larger images (e.g. 9,000 × 9,000) are refused rather than decoded
MAX_FILE_BYTES = 1 << 30  # and so are files over 1 GiB


class ImageTooLarge(UnreadableImage):
    """The image is larger than MAX_PIXELS (or its file than MAX_FILE_BYTES): it is not decoded."""


@dataclass
class ImageInfo:
    """What reading an image found out, besides its pixels: the format, how it was converted, and
    the patient and study it belongs to where the file says so (DICOM PatientID / StudyInstanceUID)."""

    format: str = ""
    bits: int = 8
    notes: list = field(default_factory=list)
    patient_id: str = ""
    study_id: str = ""


def _check_size(rows: int, columns: int) -> None:
    if int(rows) * int(columns) > MAX_PIXELS:
        raise ImageTooLarge(f"too large: {int(columns):,} × {int(rows):,} pixels "
                            f"({int(rows) * int(columns) / 1e6:.1f} megapixels; the limit is {MAX_PIXELS / 1e6:.1f})")


def _dicom_array(source, info: ImageInfo, photometric: bool = True) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    dataset = pydicom.dcmread(source)
    info.format = "DICOM"
    info.patient_id = str(getattr(dataset, "PatientID", "") or "").strip()
    info.study_id = str(getattr(dataset, "StudyInstanceUID", "") or "").strip()
    if "PixelData" not in dataset:
        raise UnreadableImage("a DICOM file without pixel data (not an image)")
    _check_size(getattr(dataset, "Rows", 0) or 0, getattr(dataset, "Columns", 0) or 0)
    info.bits = int(getattr(dataset, "BitsStored", 8) or 8)
    pixels = dataset.pixel_array
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4) and int(getattr(dataset, "SamplesPerPixel", 1) or 1) > 1:
        info.notes.append(f"colour DICOM ({dataset.PhotometricInterpretation}) converted to grayscale")
        pixels = pixels[..., :3].astype(np.float32).mean(axis=-1)
    elif pixels.ndim == 3:  # multi-frame: the first frame
        info.notes.append(f"multi-frame DICOM ({pixels.shape[0]} frames): the first frame")
        pixels = pixels[0]
    array = apply_modality_lut(pixels, dataset)
    try:
        array = apply_voi_lut(array, dataset, index=0)
    except Exception:  # noqa: BLE001 - a malformed VOI LUT leaves the modality values
        info.notes.append("unusable VOI LUT ignored")
    array = np.asarray(array, dtype=np.float32)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1: the lowest value is white. Inverted so that every image is MONOCHROME2.
        if photometric:
            info.notes.append("MONOCHROME1 inverted to MONOCHROME2")
            array = np.nanmax(array) - array
    return array


def _pil_array(picture: Image.Image, info: ImageInfo | None = None) -> np.ndarray:
    info = info if info is not None else ImageInfo()
    info.format = info.format or (picture.format or "image")
    _check_size(picture.height, picture.width)
    if picture.mode in ("RGBA", "LA", "P", "PA"):
        picture = picture.convert("RGBA" if picture.mode != "LA" else "LA")
    if picture.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
        rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
        if float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max()) > 8.0:
            info.notes.append(f"colour image ({picture.mode}) converted to grayscale")
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if picture.mode == "LA":
        return np.asarray(picture, dtype=np.float32)[..., 0]
    if picture.mode == "1":
        picture = picture.convert("L")
    if picture.mode.startswith("I;16") or picture.mode in ("I", "F"):
        info.bits = 16 if picture.mode.startswith("I;16") else 32
    return np.asarray(picture, dtype=np.float32)  # L, I;16, I, F: any bit depth


def read_image(source, *, photometric: bool = True) -> tuple[np.ndarray, ImageInfo]:
    """Like :func:`load_gray`, with what reading found out (:class:`ImageInfo`). ``photometric=False``
    ignores a DICOM's PhotometricInterpretation (MONOCHROME1 left as stored: only for tests)."""
    info = ImageInfo()
    try:
        if isinstance(source, Image.Image):
            array = _pil_array(source, info)
        else:
            if isinstance(source, (bytes, bytearray)):
                source = io.BytesIO(source)
            is_dicom = False
            if isinstance(source, (str, Path)):
                path = Path(source)
                size = path.stat().st_size
                if size > MAX_FILE_BYTES:
                    raise ImageTooLarge(f"too large: the file has {size / 2**20:,.0f} MiB (the limit is "
                                        f"{MAX_FILE_BYTES / 2**20:,.0f})")
                if size == 0:
                    raise UnreadableImage("empty file")
                is_dicom = path.suffix.lower() in (".dcm", ".dicom") or _is_dicom(path)
            else:
                position = source.tell()
                source.seek(128)
                is_dicom = source.read(4) == b"DICM"
                source.seek(position)
            if is_dicom:
                array = _dicom_array(source, info, photometric)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(source) as picture:
                        _check_size(picture.height, picture.width)  # before decoding a single pixel
                        picture.load()
                        array = _pil_array(picture, info)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"too large: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - every decoder error becomes one clear message
        raise UnreadableImage(f"cannot read image: {exc}") from exc
    if array.ndim != 2 or min(array.shape) < 8:
        raise UnreadableImage(f"not a 2-D image of usable size (shape {array.shape})")
    return normalise(array), info


def load_gray(source, *, photometric: bool = True) -> np.ndarray:
    """A 2-D float32 array in [0, 1] from a path, bytes, file object or PIL image (MONOCHROME1 DICOM
    inverted, colour converted to gray, any bit depth; padding NaN)."""
    return read_image(source, photometric=photometric)[0]


def padding_mask(array: np.ndarray, min_fraction: float = 0.005) -> np.ndarray:
    """Where the image is fill, not anatomy: regions of exactly the darkest (or brightest) value
    that touch the border and cover at least ``min_fraction`` of the image (shift/rotation
    padding, collimation). They carry no information and are left out of every comparison."""
    array = np.asarray(array, dtype=np.float32)
    mask = np.zeros(array.shape, dtype=bool)
    for value in (float(np.nanmin(array)), float(np.nanmax(array))):
        labels, count = ndimage.label(array == value)
        if not count:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        sizes = np.bincount(labels.ravel())
        for label in border:
            if label and sizes[label] >= min_fraction * array.size:
                mask |= labels == label
    return mask


def normalise(array: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the 0.5th–99.5th percentiles; padding (see padding_mask) becomes NaN."""
    array = np.asarray(array, dtype=np.float32)
    array = np.where(np.isfinite(array), array, np.nan)
    if np.isnan(array).all():
        raise UnreadableImage("the image has no finite pixel values")
    pad = padding_mask(np.nan_to_num(array, nan=float(np.nanmin(array)))) | np.isnan(array)
    if pad.mean() > 0.6:  # mostly constant: nothing to treat as padding
        pad = np.isnan(array)
    values = array[~pad] if (~pad).any() else np.nan_to_num(array).ravel()
    low, high = np.percentile(values, (0.5, 99.5))
    if high - low < 1e-6:
        low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        out = np.zeros_like(array, dtype=np.float32)
    else:
        out = np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)
    out[pad] = np.nan
    return out


def resize(array: np.ndarray, size: int) -> np.ndarray:
    """Square resize; NaN (padding) spreads to every output pixel that is less than 3/4 image."""
    array = np.asarray(array, dtype=np.float32)
    method = Image.Resampling.BOX if min(array.shape) >= size else Image.Resampling.BILINEAR
    invalid = np.isnan(array)
    if not invalid.any():
        return np.asarray(Image.fromarray(array, mode="F").resize((size, size), method), dtype=np.float32)
    valid = np.asarray(Image.fromarray((~invalid).astype(np.float32), mode="F").resize((size, size), method))
    filled = np.asarray(Image.fromarray(np.where(invalid, 0, array).astype(np.float32), mode="F").resize((size, size), method))
    out = filled / np.maximum(valid, 1e-6)
    out[valid < 0.75] = np.nan
    return out.astype(np.float32)


def verification_thumbnail(array: np.ndarray) -> np.ndarray:
    """The VERIFY_SIZE² uint8 thumbnail stored for each training image and compared after alignment
    (padding stored as black)."""
    return np.clip(np.rint(np.nan_to_num(resize(array, VERIFY_SIZE), nan=0.0) * 255.0), 0, 255).astype(np.uint8)


def query_thumbnail(array: np.ndarray) -> np.ndarray:
    """The VERIFY_SIZE² float thumbnail (0–255) of an image being screened; NaN where it is padding."""
    return resize(array, VERIFY_SIZE) * 255.0


def standardise(values: np.ndarray, axis=None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    mean = values.mean(axis=axis, keepdims=axis is not None)
    std = values.std(axis=axis, keepdims=axis is not None)
    return (values - mean) / np.maximum(std, 1e-6)


def small_thumbnail(verify: np.ndarray) -> np.ndarray:
    """THUMB_SIZE² thumbnail (0–1) of a verification thumbnail; padding (NaN) filled with the mean."""
    verify = np.asarray(verify, dtype=np.float32)
    if np.isnan(verify).any():
        verify = np.where(np.isnan(verify), np.nanmean(verify), verify)
    return resize(verify / 255.0, THUMB_SIZE)


def retrieval_vector(verify: np.ndarray) -> np.ndarray:
    """The PCA input: the standardised centre (RETRIEVAL_CROP² of THUMB_SIZE²) of the small thumbnail.

    Only the centre, because that is what a near-copy keeps: rotations, shifts and crops move the
    border and fill it with padding, which the descriptor can only guess at (mean fill). With the
    whole thumbnail, a copy cropped, rotated and shifted at once was often not among the 20
    candidates retrieved; with the centre it always was (docs/screening.md)."""
    small = small_thumbnail(verify)
    start = (THUMB_SIZE - RETRIEVAL_CROP) // 2
    return standardise(small[start:start + RETRIEVAL_CROP, start:start + RETRIEVAL_CROP]).ravel()


def perceptual_hash(verify: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash) of a verification thumbnail."""
    from scipy.fft import dctn

    verify = np.asarray(verify, dtype=np.float32)
    if np.isnan(verify).any():
        verify = np.where(np.isnan(verify), np.nanmean(verify), verify)
    small = resize(verify / 255.0, 32)
    coefficients = dctn(small, norm="ortho")[:8, :8].ravel()
    median = np.median(coefficients[1:])
    bits = (coefficients > median).astype(np.uint8)
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: np.ndarray) -> np.ndarray:
    x = np.bitwise_xor(np.uint64(a), np.asarray(b, dtype=np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def to_png_bytes(verify_or_array: np.ndarray) -> bytes:
    array = np.asarray(verify_or_array)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.nan_to_num(array, nan=0.0) * 255.0), 0, 255).astype(np.uint8)
    return encode_gray_png(array)

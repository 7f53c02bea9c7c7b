"""A synthetic abdominal CT volume with one colorectal tumour and two readers' ROI masks.

The sample cohort needs images that look like plain portal-level CT (HU, 5 mm slices, sub-mm
pixels) and carry a texture signal a model can learn only imperfectly. Two hidden tumour traits
drive that texture, so pathology labels built from the same traits are predictable from the
images without being written into them:

* ``stroma`` (fibrous stroma, drives TSR): a denser, coarser-textured tumour;
* ``immune`` (lymphocytic infiltrate, drives TILs and the Immune Score): finer, stronger speckle
  and a brighter invasive margin.

Scanner noise, blur, tumour size and position vary from patient to patient as nuisances, so the
signal has to be found, not read off. Arrays are ``(z, y, x)``; :func:`to_nifti_array` gives the
``(x, y, z)`` order NIfTI files store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Plain abdominal CT tissue values (HU) the phantom paints with.
AIR_HU = -1000
FAT_HU = -100
MUSCLE_HU = 50
BOWEL_WALL_HU = 35
BONE_HU = 700
TUMOUR_HU = 42


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that shapes one patient's scan; drawn by the sample generator."""

    stroma: float  # hidden stroma trait, standard normal
    immune: float  # hidden immune trait, standard normal
    size_px: int = 176
    n_slices: int = 12
    pixel_mm: float = 0.75
    slice_mm: float = 5.0
    tumour_radius_mm: float = 18.0
    noise_hu: float = 10.0
    hu_offset: float = 0.0  # another scanner's calibration shifts every HU value
    blur_px: float = 0.7  # the point-spread function's in-plane width (pixels)


@dataclass(frozen=True)
class Phantom:
    """One rendered scan: HU volume and two readers' masks, all ``(z, y, x)``."""

    ct: np.ndarray  # int16 HU
    mask_reader1: np.ndarray  # uint8 {0, 1}
    mask_reader2: np.ndarray  # uint8 {0, 1}
    spacing_mm: tuple[float, float, float]  # (x, y, z)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-6)


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def render(spec: PhantomSpec, rng: np.random.Generator) -> Phantom:
    """Paint one abdominal CT volume around a tumour, then let two readers outline it."""
    nz, n = spec.n_slices, spec.size_px
    px = spec.pixel_mm
    zz, yy, xx = np.meshgrid(
        np.arange(nz, dtype=np.float32) * spec.slice_mm,
        np.arange(n, dtype=np.float32) * px,
        np.arange(n, dtype=np.float32) * px,
        indexing="ij",
    )
    fov = n * px
    plane_y, plane_x = yy[0], xx[0]

    # Anatomy, identical on every slice apart from slow drift: body outline with subcutaneous fat,
    # a muscle wall, a vertebral body, gas-filled bowel loops; the rest is mesenteric fat.
    image2d = np.full((n, n), AIR_HU, dtype=np.float32)
    body = _ellipse(plane_y, plane_x, fov * 0.52, fov * 0.5, fov * 0.62, fov * 0.66)
    image2d[body] = FAT_HU
    inner = _ellipse(plane_y, plane_x, fov * 0.55, fov * 0.5, fov * 0.52, fov * 0.56)
    image2d[body & ~inner] = FAT_HU - 10
    muscle = inner & ~_ellipse(plane_y, plane_x, fov * 0.55, fov * 0.5, fov * 0.47, fov * 0.51)
    image2d[muscle] = MUSCLE_HU
    spine_cy, spine_cx = fov * 0.86, fov * 0.5
    image2d[_ellipse(plane_y, plane_x, spine_cy, spine_cx, fov * 0.09, fov * 0.1)] = BONE_HU
    image2d[_ellipse(plane_y, plane_x, spine_cy, spine_cx, fov * 0.07, fov * 0.08)] = 220
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0.25, 0.65) * fov, rng.uniform(0.2, 0.8) * fov
        r = rng.uniform(0.05, 0.09) * fov
        loop = _ellipse(plane_y, plane_x, cy, cx, r, r * rng.uniform(0.8, 1.3))
        lumen = _ellipse(plane_y, plane_x, cy, cx, r * 0.7, r * 0.7 * rng.uniform(0.8, 1.3))
        image2d[loop & inner & ~muscle] = BOWEL_WALL_HU
        image2d[lumen & inner & ~muscle] = AIR_HU + 100 * rng.uniform(0, 1)
    volume = np.repeat(image2d[None], nz, axis=0)

    # The tumour: an irregular ellipsoid inside the abdominal cavity, its outline wobbling with
    # low-frequency noise as real tumour margins do.
    radius = spec.tumour_radius_mm
    cz = (nz - 1) * spec.slice_mm * rng.uniform(0.4, 0.6)
    cy, cx = rng.uniform(0.4, 0.6) * fov, rng.uniform(0.35, 0.65) * fov
    ry, rx = radius * rng.uniform(0.8, 1.2), radius * rng.uniform(0.8, 1.2)
    rz = min(radius * rng.uniform(0.7, 1.0), (nz / 2 - 1) * spec.slice_mm)
    shape_noise = _smooth_noise(rng, volume.shape, (1.0, 6.0, 6.0))
    distance = np.sqrt(((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    tumour_field = distance - 0.12 * shape_noise  # < 1 inside the tumour
    tumour = tumour_field < 1.0

    # Tumour texture: stroma raises density and coarse heterogeneity; immune infiltrate adds fine
    # speckle and a brighter margin. Each trait changes several features a little.
    coarse = _smooth_noise(rng, volume.shape, (0.6, 3.0, 3.0))
    fine = _smooth_noise(rng, volume.shape, (0.3, 1.2, 1.2))
    margin = np.clip(1.0 - np.abs(tumour_field - 0.85) / 0.15, 0.0, 1.0)
    texture = (
        TUMOUR_HU
        + 7.0 * spec.stroma
        + 9.0 * np.exp(0.35 * spec.stroma) * coarse
        + 8.0 * np.exp(0.55 * spec.immune) * fine
        + 12.0 * np.exp(0.5 * spec.immune) * margin
    )
    volume = np.where(tumour, texture, volume)

    # Scanner: point-spread blur, then quantum noise whose level differs between patients.
    volume = ndimage.gaussian_filter(volume, (0.3, spec.blur_px, spec.blur_px)) + spec.hu_offset
    volume += spec.noise_hu * rng.standard_normal(volume.shape).astype(np.float32)
    ct = np.clip(np.rint(volume), -1024, 3071).astype(np.int16)

    reader1 = _reader_outline(tumour_field, rng, bias=0.0)
    reader2 = _reader_outline(tumour_field, rng, bias=rng.normal(0.0, 0.05))
    return Phantom(ct, reader1, reader2, (spec.pixel_mm, spec.pixel_mm, spec.slice_mm))


def _reader_outline(tumour_field: np.ndarray, rng: np.random.Generator, bias: float) -> np.ndarray:
    """A radiologist's ROI: the true outline, drawn a little loose or tight and never exact."""
    wobble = _smooth_noise(rng, tumour_field.shape, (1.0, 4.0, 4.0))
    drawn = tumour_field + bias + 0.05 * wobble < 1.0
    return drawn.astype(np.uint8)


def to_nifti_array(volume: np.ndarray) -> np.ndarray:
    """``(z, y, x)`` → the ``(x, y, z)`` axis order NIfTI stores."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))

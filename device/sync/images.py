"""Images as they travel: downscaled to a maximum side and JPEG-encoded, deterministically.

PIL is imported by the first image that needs a look, not with the sync client.
"""

from __future__ import annotations

import io
import logging

log = logging.getLogger(__name__)
IMAGE_EXTS = frozenset({"jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"})


def fit_image(data: bytes, ext: str, max_side: int, quality: int) -> tuple[bytes, str]:
    """(bytes, ext) for the package: JPEGs within `max_side` pass unchanged, other images are re-encoded.

    The same input always gives the same bytes, so a package rebuilt after a restart is identical.
    Blobs that are not images pass unchanged.
    """
    if ext.lower() not in IMAGE_EXTS:
        return data, ext
    from PIL import Image, UnidentifiedImageError

    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        log.warning("blob with extension %s is not a readable image (%s); sent as is", ext, exc)
        return data, ext
    if img.format == "JPEG" and max(img.size) <= max_side:
        return data, ext
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue(), "jpg"

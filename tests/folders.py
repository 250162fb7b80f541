"""Build small image folders of real photographs for the tests.

scikit-learn ships two real photos (china.jpg and flower.jpg, 640x427); crops of them become the classes
"china" and "flower", saved as JPEG and PNG at ImageNet-like varied sizes. Odd modes and broken files are
generated on request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photos() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    d = load_sample_images()
    return {Path(f).stem: img for f, img in zip(d.filenames, d.images, strict=True)}


def build_folder(root: Path, per_class: int = 6, val_per_class: int = 3, seed: int = 0) -> Path:
    """ROOT/train/{china,flower}/*.jpg|png and ROOT/val/... with random crops of the two photos."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for name, img in photos().items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                h, w = int(rng.integers(60, 140)), int(rng.integers(60, 200))
                top, left = int(rng.integers(0, img.shape[0] - h)), int(rng.integers(0, img.shape[1] - w))
                crop = Image.fromarray(img[top : top + h, left : left + w])
                ext = ".JPG" if k % 3 == 0 else (".png" if k % 3 == 1 else ".jpeg")
                crop.save(folder / f"{name}_{k:03d}{ext}")
    (root / "train" / "china" / "notes.txt").write_text("not an image: ignored by extension")
    return root


def add_odd_modes(folder: Path) -> list[Path]:
    """One image per unusual Pillow mode, all readable."""
    base = Image.fromarray(photos()["flower"][100:180, 200:300])
    made = []
    for mode, ext in (("P", ".png"), ("CMYK", ".jpg"), ("RGBA", ".png"), ("L", ".bmp"), ("I;16", ".png")):
        path = folder / f"odd_{mode.replace(';', '')}{ext}"
        if mode == "I;16":
            arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
            Image.fromarray(arr).save(path)  # uint16 -> mode I;16
        else:
            base.convert(mode).save(path)
        made.append(path)
    return made


def add_broken(folder: Path) -> list[Path]:
    """A truncated JPEG and a text file with an image name."""
    good = folder / "broken_src.jpg"
    Image.fromarray(photos()["china"][:120, :160]).save(good, quality=90)
    truncated = folder / "zz_truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    good.unlink()
    fake = folder / "zz_fake.jpg"
    fake.write_text("this is not a JPEG")
    return [truncated, fake]

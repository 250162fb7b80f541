"""The paper's ImageNet training augmentation (section 3.4), in plain torch.

"The image is resized with its shorter side randomly sampled in [256, 480] for scale augmentation. A 224x224
crop is randomly sampled from an image or its horizontal flip, with the per-pixel mean subtracted. The
standard color augmentation in [21] is used." [21] is AlexNet: PCA lighting noise, adding to every pixel
sum_i alpha_i * lambda_i * p_i, with (p_i, lambda_i) the eigenvectors and eigenvalues of the RGB covariance
of the training pixels and alpha_i ~ N(0, 0.1), drawn once per image.

The geometric part runs per image in the DataLoader workers (on uint8, so batches travel to the GPU at a
quarter of the float size); its randomness comes from a generator seeded per (run seed, epoch, image), so
a batch is the same whichever worker made it and a resumed run sees the same crops. Mean subtraction and
lighting run batched on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resnet.data.transforms import crop, hflip, resize, shorter_side_size


def derive_seed(seed: int, *parts: int) -> int:
    """A distinct, reproducible generator seed per (run seed, *parts), e.g. (seed, epoch) for an epoch's order
    or (seed, epoch, image) for one image's crop; the one derivation every data stream uses."""
    h = seed * 1_000_003 + 12_345
    for part in parts:
        h = h * 998_244_353 + part * 7_919 + 1
    return h % (2**63 - 1)


@dataclass(frozen=True)
class CropPlan:
    """Where one training crop comes from: the image resized to ``resized`` (H, W), the ``size`` window at
    (``top``, ``left``) of it, mirrored when ``flip``."""

    resized: tuple[int, int]
    top: int
    left: int
    size: int
    flip: bool


def plan_scale_crop_flip(
    height: int, width: int, generator: torch.Generator, scale: tuple[int, int] = (256, 480), size: int = 224
) -> CropPlan:
    """The random draws of :func:`scale_crop_flip` for an ``height x width`` image, in its order (shorter side,
    top, left, flip), so that every implementation of the augmentation takes the very same crops."""
    lo, hi = scale
    s = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    h, w = shorter_side_size(height, width, max(s, size))
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    return CropPlan((h, w), top, left, size, flip)


def scale_crop_flip(
    img: torch.Tensor, generator: torch.Generator, scale: tuple[int, int] = (256, 480), size: int = 224
) -> torch.Tensor:
    """Shorter side random in ``scale`` (inclusive), random ``size`` crop, flip with probability 1/2.

    The reference implementation: the whole image resized in float (torch's antialiased bilinear), then
    cropped. Training decodes through :func:`resnet.data.fast_augment.decode_scale_crop_flip`, which takes
    the same crops at a fraction of the cost and lands within one grey level of this.
    """
    plan = plan_scale_crop_flip(int(img.shape[-2]), int(img.shape[-1]), generator, scale, size)
    out = crop(resize(img, plan.resized), plan.top, plan.left, size, size)
    if plan.flip:
        out = hflip(out)
    return out.contiguous()


#: The ImageNet RGB covariance in the [0, 1] pixel convention, as fb.resnet.torch ships it (datasets/imagenet.lua,
#: from AlexNet's training set): eigenvalues (variances along the principal axes) and eigenvectors (columns).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclass
class Lighting:
    """AlexNet's PCA colour augmentation, applied to a normalised float batch on its device.

    AlexNet (section 4.1) adds ``[p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T`` to every pixel, ``p_i`` and ``l_i`` the
    eigenvectors and *eigenvalues* of the 3 x 3 RGB covariance of the training pixels, ``a_i ~ N(0, std)``
    drawn once per image. ``eigvec`` holds the eigenvectors as columns and ``eigval`` the eigenvalues, for
    pixels in [0, 1] (fb.resnet.torch's convention: 0.2175, 0.0188, 0.0045 on ImageNet). The shift is added
    after mean subtraction (it is a per-image constant, so the order does not matter) and divided by the
    normaliser's std when there is one.
    """

    eigval: torch.Tensor
    eigvec: torch.Tensor
    std: float = 0.1

    @classmethod
    def imagenet(cls, std: float = 0.1) -> Lighting:
        """The standard constants (fb.resnet.torch's, AlexNet's ImageNet axes): the default for every recipe."""
        return cls(torch.tensor(IMAGENET_EIGVAL), torch.tensor(IMAGENET_EIGVEC), std)

    @classmethod
    def fit(cls, pixels: torch.Tensor, std: float = 0.1) -> Lighting:
        """Axes estimated from an ``N x 3`` sample of RGB pixel values in [0, 1] (eigenvalues, not their roots)."""
        x = pixels.double()
        cov = torch.cov(x.T)
        eigval, eigvec = torch.linalg.eigh(cov)
        return cls(eigval.clamp_min(0).float(), eigvec.float(), std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Add one random colour shift per image of the ``N x 3 x H x W`` batch ``x`` (in place and returned)."""
        if self.std <= 0:
            return x
        alpha = torch.randn(x.shape[0], 3, generator=generator) * self.std
        shift = (alpha * self.eigval) @ self.eigvec.T  # N x 3: sum_i alpha_i lambda_i p_i
        shift = shift.to(x.device, x.dtype)
        if scale is not None:
            shift = shift / scale.view(1, 3).to(x.device, x.dtype)
        return x.add_(shift[:, :, None, None])

    def state_dict(self) -> dict:
        # "eigval_kind" marks the convention: files written before it existed held the square roots.
        return {"eigval": self.eigval, "eigvec": self.eigvec, "std": self.std, "eigval_kind": "variance"}

    @classmethod
    def from_state_dict(cls, state: dict) -> Lighting:
        """Reads both conventions: the square roots an older version stored are squared back (2-12x too strong
        per axis otherwise), so an old checkpoint resumes with the standard magnitude."""
        eigval = state["eigval"].float()
        if state.get("eigval_kind") != "variance":
            eigval = eigval.square()
        return cls(eigval, state["eigvec"].float(), float(state["std"]))

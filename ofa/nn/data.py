"""Images for training and evaluating a supernet, handed out by index at any resolution.

A data set gives `batch(indices, resolution)`, so the trainer picks the resolution per batch
(OFA's elastic resolution) and derives every batch from the step number alone: resuming needs
no loader state, and each process of a distributed run takes its own share of the same global
batch. Two sources, neither needing torchvision:

- an image folder, `ROOT/train/<class>/*.jpg` and `ROOT/val/<class>/*.jpg` (also .jpeg, .png),
  decoded with Pillow: shorter side resized to r / 0.875, centre r x r crop;
- `digits`: scikit-learn's 1,797 handwritten digits (8x8, 10 classes), which ship inside its
  wheel, so demos and tests need no download. Grey levels are repeated on three channels and
  upscaled to the requested resolution; the train/val split (1,438 / 359) is fixed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "ImageSet",
    "TensorImages",
    "ImageFolder",
    "Splits",
    "open_data",
    "digits",
    "step_indices",
    "fixed_indices",
    "IMAGE_SUFFIXES",
    "place",
]

# ImageNet statistics, as OFA normalises; every source is normalised the same way.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
T = TypeVar("T", bound=torch.Tensor | torch.nn.Module)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CROP_FRACTION = 0.875
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


# Rows of a data set: a list, or an index array as the trainer draws them.
Indices = Sequence[int] | np.ndarray


class ImageSet(Protocol):
    """What the trainer needs from a data set."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def batch(self, indices: Indices, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, 3, r, r) float32 normalised, labels (n,) int64)."""


def place(x: T, device: torch.device) -> T:
    """A model or a batch of images on `device`, channels-last: oneDNN's depthwise 7x7
    convolutions on the small feature maps of this supernet run 2-3x faster in that layout
    on CPU than in the default one (`bench/train_throughput.py`)."""
    return cast(T, x.to(device, memory_format=torch.channels_last))  # type: ignore[call-overload]


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels.float() / 255 - MEAN) / STD


@dataclass(frozen=True)
class TensorImages:
    """Images held in memory as uint8 (N, 3, H, W), resized per batch (bilinear)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: Indices, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        images = _normalise(self.pixels[index])
        images = F.interpolate(
            images, size=(resolution, resolution), mode="bilinear", align_corners=False
        )
        return images, self.labels[index]


class ImageFolder:
    """`root/<class>/<image>` files, classes in name order, decoded on demand with Pillow
    (a few threads: Pillow releases the GIL while decoding)."""

    def __init__(
        self, root: str | Path, classes: Sequence[str] | None = None, threads: int = 4
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data: {root} is not a folder")
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        if classes is None:
            classes = found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(
                f"data: {root} has class folders not in the training set: {', '.join(unknown)}"
            )
        self.classes = tuple(classes)
        self.files: list[Path] = []
        labels = []
        for label, name in enumerate(self.classes):
            folder = root / name
            files = (
                sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if folder.is_dir()
                else []
            )
            self.files += files
            labels += [label] * len(files)
        if not self.files:
            raise ValueError(f"data: no {'/'.join(IMAGE_SUFFIXES)} images under {root}/<class>/")
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.threads = threads

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, indices: Indices, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        load = functools.partial(_decode, resolution=resolution)
        with ThreadPoolExecutor(self.threads) as pool:
            arrays = list(pool.map(load, [self.files[i] for i in indices]))
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return _normalise(pixels), self.labels[
            torch.as_tensor(np.asarray(indices), dtype=torch.long)
        ]


def _decode(path: Path, resolution: int) -> np.ndarray:
    """(r, r, 3) uint8: RGB, shorter side to r / 0.875, centre crop (OFA's evaluation view)."""
    from PIL import Image  # the `train` extra

    try:
        image = Image.open(path)
        image.load()
    except OSError as exc:  # PIL's "cannot identify image file" is an OSError too
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    with image:
        rgb = image.convert("RGB")
        scale = resolution / CROP_FRACTION / min(rgb.size)
        size = (
            max(resolution, round(rgb.width * scale)),
            max(resolution, round(rgb.height * scale)),
        )
        resized = rgb.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        return np.asarray(resized.crop((left, top, left + resolution, top + resolution)))


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet

    @property
    def n_classes(self) -> int:
        return len(self.train.classes)


def digits() -> Splits:
    """scikit-learn's bundled digits, split 1,438 / 359 by a fixed permutation."""
    from sklearn.datasets import load_digits  # the `train` extra; the data is in the wheel

    bunch = load_digits()
    grey = torch.from_numpy(np.round(bunch.images * (255 / 16)).astype(np.uint8))
    pixels = grey[:, None].expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels)))
    n_val = round(len(labels) * DIGITS_VAL_FRACTION)
    classes = tuple(str(c) for c in range(10))
    val, train = order[:n_val], order[n_val:]
    return Splits(
        TensorImages(pixels[train], labels[train], classes),
        TensorImages(pixels[val], labels[val], classes),
    )


def open_data(source: str | Path) -> Splits:
    """`"digits"`, or a folder holding `train/` and `val/` image folders."""
    if str(source) == "digits":
        return digits()
    root = Path(source)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ValueError(
                f"data: expected 'digits' or a folder with train/<class>/ and "
                f"val/<class>/ images; {root / split} is missing"
            )
    train = ImageFolder(root / "train")
    return Splits(train, ImageFolder(root / "val", classes=train.classes))


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    order.setflags(write=False)
    return order


def step_indices(
    n: int, step: int, batch_size: int, seed: int, rank: int = 0, world: int = 1
) -> np.ndarray:
    """Indices of this process's part of the global batch of `step`.

    Global batches (`batch_size * world` images) are consecutive slices of an endless chain of
    per-epoch permutations seeded by (seed, epoch); process `rank` takes the rank-th part. A
    pure function of the step, so a resumed run draws exactly the batches it would have.
    """
    size = batch_size * world
    start = step * size
    picked: list[np.ndarray] = []
    taken = 0
    while taken < size:
        epoch, offset = divmod(start + taken, n)
        part = _epoch_order(n, seed, epoch)[offset : offset + size - taken]
        picked.append(part)
        taken += len(part)
    return np.concatenate(picked)[rank * batch_size : (rank + 1) * batch_size]


def fixed_indices(n: int, count: int, seed: int = 0) -> np.ndarray:
    """The same `count` indices every time (e.g. the images for BN recalibration)."""
    return np.random.default_rng(seed).permutation(n)[: min(count, n)]

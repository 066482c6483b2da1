"""The accuracy predictor: ImageNet top-1 of a subnet from its architecture, as OFA's
tutorial predictor computes it, evaluated with numpy over whole populations.

Input: kernel one-hot (20 blocks x 3, order 3/5/7), expand one-hot (20 x 3, order 3/4/6),
then a resolution one-hot; blocks skipped by depth are all zeros. The official predictor's
resolution one-hot has 8 slots, index (r - 112) // 16, so 128 values in all; a predictor we
train picks its slots from its data (`ResolutionEncoding`). Model: Linear(in, 400)-ReLU-
Linear(400, 400)-ReLU-Linear(400, 400)-ReLU-Linear(400, 1), output top-1 as a fraction.
Asking about resolutions outside those the predictor was trained on (160..224 for the official
weights) warns; a resolution its encoding cannot hold (where the reference silently wraps or
fails) is refused.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig, check_width

__all__ = [
    "AccuracyPredictor",
    "ResolutionEncoding",
    "OFFICIAL_ENCODING",
    "features",
    "mlp",
    "read_torch_state",
]

# Non-weight arrays of our .npz: the supernet (family, width) and the resolution encoding.
_META = ("family", "width", "r_min", "r_step", "r_slots", "r_trained")


def _arch_features(family: space.Family) -> int:
    """Inputs before the resolution one-hot: a kernel and an expand one-hot per block."""
    return family.n_blocks * (len(family.kernel_choices) + len(family.expand_choices))


@dataclass(frozen=True)
class ResolutionEncoding:
    """Resolution one-hot: slot `(r - r_min) // step` of `slots`; `trained` is the inclusive
    range of resolutions the predictor saw."""

    r_min: int
    step: int
    slots: int
    trained: tuple[int, int]

    @property
    def r_max(self) -> int:
        return self.r_min + self.step * self.slots - 1

    @classmethod
    def for_resolutions(cls, resolutions: Iterable[int]) -> ResolutionEncoding:
        """One slot per distinct step between the data's resolutions."""
        found = sorted({int(r) for r in resolutions})
        step = int(np.gcd.reduce(np.diff(found))) if len(found) > 1 else 16
        return cls(found[0], step, (found[-1] - found[0]) // step + 1, (found[0], found[-1]))


OFFICIAL_ENCODING = ResolutionEncoding(112, 16, 8, (160, 224))


def features(batch: ConfigBatch, encoding: ResolutionEncoding = OFFICIAL_ENCODING) -> np.ndarray:
    """(n, 120 + slots) float32 encoding of a MobileNetV3 batch (see the module docstring);
    ProxylessNAS's 21 blocks make it 126 + slots."""
    outside = (batch.r < encoding.r_min) | (batch.r > encoding.r_max)
    if outside.any():
        raise ValueError(
            f"r: the accuracy predictor encodes resolutions "
            f"{encoding.r_min}..{encoding.r_max}, got {int(batch.r[outside][0])}"
        )
    n = len(batch)
    active, family = batch.active[:, :, None], batch.family_space
    kernels = np.eye(len(family.kernel_choices), dtype=np.float32)[batch.ks] * active
    expands = np.eye(len(family.expand_choices), dtype=np.float32)[batch.e] * active
    resolution = np.zeros((n, encoding.slots), np.float32)
    resolution[np.arange(n), (batch.r - encoding.r_min) // encoding.step] = 1
    return np.hstack([kernels.reshape(n, -1), expands.reshape(n, -1), resolution])


def mlp(x: np.ndarray, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> np.ndarray:
    """(n,) outputs of Linear-ReLU-...-Linear(1) over rows `x` (weights (out, in) as torch's)."""
    for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        x = x @ weight.T + bias
        if i < len(weights) - 1:
            x = np.maximum(x, 0.0)
    return x[:, 0]


def read_torch_state(path: Path, keys: str) -> dict[str, np.ndarray]:
    """A predictor's torch state dict as arrays (read weights only: no pickle runs), or a
    ValueError naming the file and the `keys` expected."""
    import torch  # only for the authors' .pth files

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not one
        raise ValueError(f"{path}: not a weights-only torch file ({exc})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(
            f"{path}: expected an accuracy predictor's state dict (tensors under {keys}), "
            f"got a {type(state).__name__}"
            + (" holding other things than tensors" if isinstance(state, Mapping) else "")
        )
    return {k: v.numpy() for k, v in state.items()}


@dataclass(frozen=True)
class AccuracyPredictor:
    """An MLP as plain arrays: `weights[i]` is (out, in) like torch's Linear. `width` is the
    supernet whose subnets' accuracy it predicts (the official file: w1.2). It computes in
    float32, as torch does: within 1e-7 of float64, and 2-2.5x faster (the search's main
    cost)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    width: float = 1.2
    encoding: ResolutionEncoding = OFFICIAL_ENCODING
    family: str = space.MOBILENET_V3.name

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_width(self.width, space.family_named(self.family)))
        for name in ("weights", "biases"):
            arrays = tuple(np.array(a, np.float32) for a in getattr(self, name))  # its own
            object.__setattr__(self, name, arrays)

    @property
    def supernet(self) -> str:
        """OFA's name of the supernet whose subnets it predicts."""
        return space.FAMILIES[self.family].supernet(self.width)

    def predict(self, configs: ConfigBatch | Sequence[SubnetConfig]) -> np.ndarray:
        """Predicted top-1 (fraction) of each config."""
        batch = configs if isinstance(configs, ConfigBatch) else ConfigBatch.from_configs(configs)
        if batch.family != self.family:
            raise ValueError(
                f"family: this accuracy predictor is for {space.FAMILIES[self.family].title} "
                f"subnets, the configs are {batch.family_space.title}"
            )
        if batch.w != self.width:
            raise ValueError(
                f"w: this accuracy predictor is for the w{self.width} supernet, "
                f"the configs are w{batch.w}"
            )
        x = features(batch, self.encoding)
        low, high = self.encoding.trained
        if ((batch.r < low) | (batch.r > high)).any():
            warnings.warn(
                f"accuracy predictor: resolutions outside {low}..{high} are outside "
                "what it was trained on",
                stacklevel=2,
            )
        return mlp(x, self.weights, self.biases)

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Any],
        width: float = 1.2,
        encoding: ResolutionEncoding = OFFICIAL_ENCODING,
        family: str = space.MOBILENET_V3.name,
    ) -> AccuracyPredictor:
        """From `{"0.weight", "0.bias", "2.weight", ...}` arrays (the tutorial's layout)."""
        linear = sorted({int(k.split(".")[0]) for k in state if k.split(".")[0].isdigit()})
        expected = {f"{i}.{p}" for i in linear for p in ("weight", "bias")}
        supernet = space.family_named(family)
        width = check_width(width, supernet)  # before the shapes, which depend on it
        n_in = _arch_features(supernet) + encoding.slots
        if set(state) != expected or np.shape(state.get("0.weight", ()))[1:] != (n_in,):
            raise ValueError(
                f"accuracy predictor: expected keys 0/2/4/6 .weight/.bias with a "
                f"first layer taking {n_in} inputs, got {sorted(state)}"
            )
        return cls(
            tuple(np.asarray(state[f"{i}.weight"]) for i in linear),
            tuple(np.asarray(state[f"{i}.bias"]) for i in linear),
            width,
            encoding,
            family,
        )

    @classmethod
    def load(cls, path: str | Path) -> AccuracyPredictor:
        """The official `.pth` (read with torch, weights only; it is for the w1.2 supernet)
        or our `.npz` (which records its width and resolution encoding)."""
        path = Path(path)
        if path.suffix == ".npz":
            try:
                with np.load(path) as data:
                    meta = {k: data[k] for k in _META if k in data.files}
                    width = float(meta.get("width", 1.2))
                    family = str(meta.get("family", space.MOBILENET_V3.name))
                    encoding = OFFICIAL_ENCODING  # files saved before encodings were recorded
                    if "r_min" in meta:
                        low, high = (int(r) for r in meta["r_trained"])
                        encoding = ResolutionEncoding(
                            int(meta["r_min"]),
                            int(meta["r_step"]),
                            int(meta["r_slots"]),
                            (low, high),
                        )
                    state = {k: data[k] for k in data.files if k not in _META}
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}: not an accuracy predictor .npz ({exc!r})") from None
            try:
                return cls.from_state_dict(state, width, encoding, family)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        return cls.from_state_dict(read_torch_state(path, "keys 0/2/4/6 .weight/.bias"))

    def save(self, path: str | Path) -> None:
        """As `.npz` (no pickle), loadable without torch."""
        e = self.encoding
        arrays = {
            "family": np.array(self.family),
            "width": np.array(self.width),
            "r_min": np.array(e.r_min),
            "r_step": np.array(e.step),
            "r_slots": np.array(e.slots),
            "r_trained": np.array(e.trained),
        }
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"{2 * i}.weight"], arrays[f"{2 * i}.bias"] = weight, bias
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as f:  # np.savez would add ".npz" to a bare name
                # mypy matches **arrays against savez's `allow_pickle: bool` keyword too
                np.savez(f, **arrays)  # type: ignore[arg-type]
            os.replace(partial, path)  # never a half-written predictor under its own name
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(path)) from None  # names the target

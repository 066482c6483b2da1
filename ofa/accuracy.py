"""The accuracy predictor: ImageNet top-1 of a subnet from its architecture, as OFA's
tutorial predictor computes it, evaluated with numpy over whole populations.

Input (128 values): kernel one-hot (20 blocks x 3, order 3/5/7), expand one-hot (20 x 3,
order 3/4/6), resolution one-hot (8 slots, index (r - 112) // 16); blocks skipped by depth
are all zeros. Model: Linear(128, 400)-ReLU-Linear(400, 400)-ReLU-Linear(400, 400)-ReLU-
Linear(400, 1), output top-1 as a fraction. The official weights were trained on resolutions
160..224 only: asking below 160 warns; a resolution the encoding cannot hold (below 112 or
from 240, where the reference silently wraps or fails) is refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig

__all__ = ["AccuracyPredictor", "features", "TRAINED_RESOLUTIONS"]

TRAINED_RESOLUTIONS = (160, 224)  # inclusive range the official predictor was trained on
_R_SLOTS = 8
_R_MIN = 112


def features(batch: ConfigBatch) -> np.ndarray:
    """(n, 128) float32 encoding of a batch (see the module docstring)."""
    if ((batch.r < _R_MIN) | (batch.r >= _R_MIN + 16 * _R_SLOTS)).any():
        bad = int(batch.r[(batch.r < _R_MIN) | (batch.r >= _R_MIN + 16 * _R_SLOTS)][0])
        raise ValueError(f"r: the accuracy predictor encodes resolutions "
                         f"{_R_MIN}..{_R_MIN + 16 * _R_SLOTS - 1}, got {bad}")
    n = len(batch)
    active = batch.active[:, :, None]
    kernels = np.eye(len(space.KERNEL_CHOICES), dtype=np.float32)[batch.ks] * active
    expands = np.eye(len(space.EXPAND_CHOICES), dtype=np.float32)[batch.e] * active
    resolution = np.zeros((n, _R_SLOTS), np.float32)
    resolution[np.arange(n), (batch.r - _R_MIN) // 16] = 1
    return np.hstack([kernels.reshape(n, -1), expands.reshape(n, -1), resolution])


@dataclass(frozen=True)
class AccuracyPredictor:
    """An MLP as plain arrays: `weights[i]` is (out, in) like torch's Linear. `width` is the
    supernet whose subnets' accuracy it predicts (the official file: w1.2)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    width: float = 1.2

    def predict(self, configs: ConfigBatch | Sequence[SubnetConfig]) -> np.ndarray:
        """Predicted top-1 (fraction) of each config."""
        batch = configs if isinstance(configs, ConfigBatch) else ConfigBatch.from_configs(configs)
        if batch.w != self.width:
            raise ValueError(f"w: this accuracy predictor is for the w{self.width} supernet, "
                             f"the configs are w{batch.w}")
        x = features(batch).astype(np.float64)
        if (batch.r < TRAINED_RESOLUTIONS[0]).any():
            warnings.warn(f"accuracy predictor: resolutions below {TRAINED_RESOLUTIONS[0]} "
                          "are outside what it was trained on", stacklevel=2)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = x @ weight.T + bias
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return x[:, 0]

    @classmethod
    def from_state_dict(cls, state: dict, width: float = 1.2) -> "AccuracyPredictor":
        """From `{"0.weight", "0.bias", "2.weight", ...}` arrays (the tutorial's layout)."""
        linear = sorted({int(k.split(".")[0]) for k in state if k.split(".")[0].isdigit()})
        expected = {f"{i}.{p}" for i in linear for p in ("weight", "bias")}
        if set(state) != expected or np.shape(state.get("0.weight")) != (400, 128):
            raise ValueError(f"accuracy predictor: expected keys 0/2/4/6 .weight/.bias with a "
                             f"(400, 128) first layer, got {sorted(state)}")
        return cls(tuple(np.asarray(state[f"{i}.weight"], np.float64) for i in linear),
                   tuple(np.asarray(state[f"{i}.bias"], np.float64) for i in linear), width)

    @classmethod
    def load(cls, path: str | Path) -> "AccuracyPredictor":
        """The official `.pth` (read with torch, weights only; it is for the w1.2 supernet)
        or our `.npz` (which records its width)."""
        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path) as data:
                width = float(data["width"]) if "width" in data.files else 1.2
                return cls.from_state_dict({k: data[k] for k in data.files if k != "width"}, width)
        import torch  # only for the official file
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a file that is not one
            raise ValueError(f"{path}: not a weights-only torch file ({exc})") from None
        return cls.from_state_dict({k: v.numpy() for k, v in state.items()})

    def save(self, path: str | Path) -> None:
        """As `.npz` (no pickle), loadable without torch."""
        arrays = {}
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            arrays[f"{2 * i}.weight"], arrays[f"{2 * i}.bias"] = weight, bias
        np.savez(Path(path), width=np.array(self.width), **arrays)

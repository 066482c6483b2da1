"""OFA-ResNet50 (`ofa_resnet50`): its space as plain data, one validated canonical config per
subnet, its layer plan (MACs, parameters, LUT keys) and its official accuracy predictor's
encoding. No torch.

The space: an input stem of three 3x3 convolutions (the middle one, a residual, can be
skipped), max pooling, four stages of bottleneck blocks (2, 2, 4 and 2 blocks, plus 0..2
more each), global pooling and a linear classifier. Each block's expand ratio (0.2, 0.25 or
0.35 of its output channels, in the middle) is elastic, and so is the width multiplier
(0.65, 0.8, 1.0) of the stem's middle and output convolutions and of each stage.

A config in OFA's spelling: `d` (5: the stem, 0 skipping its middle conv or 2 keeping it,
then each stage's extra blocks), `e` (18 expand ratios, one per block slot), `w` (6 indices
into the width multipliers: stem middle, stem output, each stage) and `r`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ofa import space
from ofa.accuracy import mlp, read_torch_state
from ofa.config import check_int, checked_fields, show
from ofa.plan import AVG_POOL, BOTTLENECK, FIRST_CONV, LOGITS, MAX_POOL, STEM_CONV, LayerSpec

__all__ = [
    "FAMILY",
    "ResNetConfig",
    "resnet_layer_plan",
    "features",
    "ResNetAccuracyPredictor",
]

FAMILY = "resnet50"
SUPERNET = "ofa_resnet50"
BASE_DEPTHS = (2, 2, 4, 2)
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
DEPTH_CHOICES = (0, 1, 2)  # blocks beyond a stage's base depth
STEM_DEPTH_CHOICES = (0, 2)  # 2 runs the stem's middle conv, 0 skips it (OFA's spelling)
EXPAND_CHOICES = (0.2, 0.25, 0.35)
WIDTH_MULTS = (0.65, 0.8, 1.0)
STEM_WIDTH = 64
MAX_EXTRA = max(DEPTH_CHOICES)
N_BLOCKS = sum(BASE_DEPTHS) + len(BASE_DEPTHS) * MAX_EXTRA  # 18 block slots
N_WIDTHS = len(BASE_DEPTHS) + 2


def _check_expand(value: Any, index: int) -> float:
    """One of EXPAND_CHOICES, exactly (so equal subnets hash equal)."""
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        for choice in EXPAND_CHOICES:
            if abs(float(value) - choice) < 1e-9:
                return choice
    raise ValueError(
        f"e[{index}]: expected one of {', '.join(map(str, EXPAND_CHOICES))}, got {show(value)}"
    )


def _sequence(field: str, value: Any, length: int) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{field}: expected a list of {length} entries, got {show(value)}")
    if len(value) != length:
        raise ValueError(f"{field}: expected {length} entries, got {len(value)}")
    return value


def stage_blocks(stage: int) -> range:
    """The block slots of `stage` (0..3) in `e`."""
    start = sum(BASE_DEPTHS[:stage]) + stage * MAX_EXTRA
    return range(start, start + BASE_DEPTHS[stage] + MAX_EXTRA)


@dataclass(frozen=True)
class ResNetConfig:
    """One OFA-ResNet50 subnet (see the module docstring). Construction validates and
    canonicalises: the expand ratio of a block slot that depth skips is the smallest."""

    d: tuple[int, ...]
    e: tuple[float, ...]
    w: tuple[int, ...]
    r: int = 224
    family: ClassVar[str] = FAMILY

    def __post_init__(self) -> None:
        depths = _sequence("d", self.d, 1 + len(BASE_DEPTHS))
        d = (check_int("d", depths[0], STEM_DEPTH_CHOICES, index=0),) + tuple(
            check_int("d", v, DEPTH_CHOICES, index=i) for i, v in enumerate(depths[1:], 1)
        )
        e = [_check_expand(v, i) for i, v in enumerate(_sequence("e", self.e, N_BLOCKS))]
        w = tuple(
            check_int("w", v, range(len(WIDTH_MULTS)), index=i)
            for i, v in enumerate(_sequence("w", self.w, N_WIDTHS))
        )
        r = check_int("r", self.r, bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION))
        active = set(_active_blocks(d))
        e = [x if b in active else min(EXPAND_CHOICES) for b, x in enumerate(e)]
        for name, value in (("d", d), ("e", tuple(e)), ("w", w), ("r", r)):
            object.__setattr__(self, name, value)

    @property
    def active_blocks(self) -> list[int]:
        """Block slots that run, in order."""
        return _active_blocks(self.d)

    @property
    def supernet(self) -> str:
        """The supernet this subnet is taken from (OFA's model-zoo name)."""
        return SUPERNET

    @property
    def stem_skipped(self) -> bool:
        return self.d[0] != max(STEM_DEPTH_CHOICES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": FAMILY,
            "d": list(self.d),
            "e": list(self.e),
            "w": list(self.w),
            "r": self.r,
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces. Equal subnets give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetConfig:
        """Parse our JSON or OFA's (`"image_size"`, `"r": [224]`); unknown keys are refused."""
        known = {"family", "d", "e", "w", "r", "image_size"}
        r = checked_fields(data, known, ("d", "e", "w"), "a ResNet50 subnet")
        return cls(d=data["d"], e=data["e"], w=data["w"], r=r)

    @classmethod
    def largest(cls, r: int = 224) -> ResNetConfig:
        return cls((2,) * 5, (max(EXPAND_CHOICES),) * N_BLOCKS, (len(WIDTH_MULTS) - 1,) * 6, r)

    @classmethod
    def smallest(cls, r: int = 224) -> ResNetConfig:
        return cls((0,) * 5, (min(EXPAND_CHOICES),) * N_BLOCKS, (0,) * N_WIDTHS, r)

    @classmethod
    def sample(cls, rng: random.Random, resolutions: Sequence[int] = (224,)) -> ResNetConfig:
        """Uniform per choice, like OFA's `sample_active_subnet`."""
        return cls(
            d=(rng.choice(STEM_DEPTH_CHOICES),)
            + tuple(rng.choice(DEPTH_CHOICES) for _ in BASE_DEPTHS),
            e=tuple(rng.choice(EXPAND_CHOICES) for _ in range(N_BLOCKS)),
            w=tuple(rng.randrange(len(WIDTH_MULTS)) for _ in range(N_WIDTHS)),
            r=rng.choice(list(resolutions)),
        )


def _active_blocks(d: Sequence[int]) -> list[int]:
    return [
        b
        for stage, base in enumerate(BASE_DEPTHS)
        for b in stage_blocks(stage)[: base + d[stage + 1]]
    ]


def stem_widths(w: Sequence[int]) -> tuple[int, int]:
    """(middle, output) channels of the input stem for width indices `w`."""
    output = [space.make_divisible(STEM_WIDTH * m) for m in WIDTH_MULTS]
    middle = [space.make_divisible(c // 2) for c in output]
    return middle[w[0]], output[w[1]]


def stage_width(stage: int, index: int) -> int:
    return space.make_divisible(STAGE_WIDTHS[stage] * WIDTH_MULTS[index])


def resnet_layer_plan(config: ResNetConfig) -> list[LayerSpec]:
    """All layers of `config` in execution order: the stem's convolutions, max pooling, the
    active bottlenecks, global pooling and the classifier."""
    middle, stem_out = stem_widths(config.w)
    layer = partial(LayerSpec, family=FAMILY)
    size = (config.r + 1) // 2
    plan = [layer(FIRST_CONV, (config.r, config.r, 3), (size, size, middle), act="relu")]
    if not config.stem_skipped:
        plan.append(
            layer(STEM_CONV, (size, size, middle), (size, size, middle), idskip=True, act="relu")
        )
    plan.append(layer(STEM_CONV, (size, size, middle), (size, size, stem_out), act="relu"))
    pooled = (size + 1) // 2
    plan.append(layer(MAX_POOL, (size, size, stem_out), (pooled, pooled, stem_out), kernel=3))
    size, channels = pooled, stem_out
    for stage, base in enumerate(BASE_DEPTHS):
        out = stage_width(stage, config.w[stage + 2])
        for i, block in enumerate(stage_blocks(stage)[: base + config.d[stage + 1]]):
            stride = STAGE_STRIDES[stage] if i == 0 else 1
            out_size = (size - 1) // stride + 1
            mid = space.make_divisible(round(out * config.e[block]))
            plan.append(
                layer(
                    BOTTLENECK,
                    (size, size, channels),
                    (out_size, out_size, out),
                    mid=mid,
                    kernel=3,
                    stride=stride,
                    idskip=i > 0,  # the first block of a stage has an avgpool-conv shortcut
                    act="relu",
                )
            )
            size, channels = out_size, out
    return plan + [
        layer(AVG_POOL, (size, size, channels), (1, 1, channels)),
        layer(LOGITS, (1, 1, channels), (space.N_CLASSES,)),
    ]


# The official accuracy predictor's encoding (`ResNetArchEncoder` with these resolutions):
# resolution one-hot, stem kept, six width one-hots, then the expand one-hot of each block
# slot (all zeros when depth skips it).
PREDICTOR_RESOLUTIONS = (128, 144, 160, 176, 192, 224, 240, 256)
N_FEATURES = len(PREDICTOR_RESOLUTIONS) + 2 + N_WIDTHS * len(WIDTH_MULTS) + N_BLOCKS * 3


def features(configs: Sequence[ResNetConfig]) -> np.ndarray:
    """(n, 82) float32 encoding of `configs` for the official ResNet50 accuracy predictor;
    a resolution it has no slot for is refused by name."""
    x = np.zeros((len(configs), N_FEATURES), np.float32)
    widths_at = len(PREDICTOR_RESOLUTIONS) + 2
    expands_at = widths_at + N_WIDTHS * len(WIDTH_MULTS)
    for row, config in enumerate(configs):
        if config.r not in PREDICTOR_RESOLUTIONS:
            raise ValueError(
                f"r: the ResNet50 accuracy predictor encodes resolutions "
                f"{', '.join(map(str, PREDICTOR_RESOLUTIONS))}, got {config.r}"
            )
        x[row, PREDICTOR_RESOLUTIONS.index(config.r)] = 1
        x[row, len(PREDICTOR_RESOLUTIONS) + (0 if config.stem_skipped else 1)] = 1
        for i, index in enumerate(config.w):
            x[row, widths_at + i * len(WIDTH_MULTS) + index] = 1
        for block in config.active_blocks:
            x[row, expands_at + block * 3 + EXPAND_CHOICES.index(config.e[block])] = 1
    return x


@dataclass(frozen=True)
class ResNetAccuracyPredictor:
    """The authors' ResNet50 accuracy predictor (`ofa_resnet50_acc_predictor.pth`, OFA's
    library `AccuracyPredictor`): three Linear(400)-ReLU layers over `features`, then a
    Linear(400, 1) without bias plus `base_acc`, held here as that layer's bias. Top-1 as a
    fraction, computed in float32 as torch does."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    LAYERS: ClassVar[int] = 4

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ResNetAccuracyPredictor:
        hidden = [f"layers.{i}.0" for i in range(cls.LAYERS - 1)]
        expected = {f"{p}.{k}" for p in hidden for k in ("weight", "bias")}
        expected |= {f"layers.{cls.LAYERS - 1}.weight", "base_acc"}
        first = np.shape(state.get("layers.0.0.weight", ()))
        if set(state) != expected or first[1:] != (N_FEATURES,):
            raise ValueError(
                f"accuracy predictor: expected the ResNet50 predictor's keys layers.0-2.0 "
                f".weight/.bias, layers.3.weight and base_acc, its first layer taking "
                f"{N_FEATURES} inputs; got {', '.join(sorted(state)[:8])}"
            )
        weights = [state[f"{p}.weight"] for p in hidden] + [
            state[f"layers.{cls.LAYERS - 1}.weight"]
        ]
        biases = [state[f"{p}.bias"] for p in hidden] + [np.reshape(state["base_acc"], (1,))]
        return cls(
            tuple(np.array(w, np.float32) for w in weights),
            tuple(np.array(b, np.float32) for b in biases),
        )

    @classmethod
    def load(cls, path: str | Path) -> ResNetAccuracyPredictor:
        """The authors' `.pth` (read with torch, weights only)."""
        return cls.from_state_dict(read_torch_state(Path(path), "layers.* and base_acc"))

    def predict(self, configs: Sequence[ResNetConfig]) -> np.ndarray:
        """Predicted top-1 (fraction) of each config."""
        return mlp(features(configs), self.weights, self.biases)


def resnet_lut_specs(r: int) -> list[LayerSpec]:
    """Every distinct LUT entry some ResNet50 subnet needs at resolution `r`: the stem's
    convolutions and max pooling at each width, each stage's first block from each input
    width to each output width and its other blocks at each width, with each expand ratio,
    then pooling and the classifier at each width."""
    widths = range(len(WIDTH_MULTS))
    choices = [
        ResNetConfig((stem, 0, 0, 0, 0), (EXPAND_CHOICES[x],) * N_BLOCKS, (a, b) + (c,) * 4, r)
        for stem in STEM_DEPTH_CHOICES
        for a in widths
        for b in widths
        for c in widths
        for x in range(len(EXPAND_CHOICES))
    ]
    # two blocks per stage hold both kinds; a first block's input width varies with the
    # previous stage's, which these uniform configs leave out: add them
    mixed = [
        ResNetConfig((0, 0, 0, 0, 0), (e,) * N_BLOCKS, (0, b) + tuple(ws), r)
        for b in widths
        for e in EXPAND_CHOICES
        for ws in _stage_width_pairs()
    ]
    specs: dict[str, LayerSpec] = {}
    for config in choices + mixed:
        for spec in resnet_layer_plan(config):
            specs.setdefault(spec.lut_key, spec)
    return list(specs.values())


def _stage_width_pairs() -> list[tuple[int, int, int, int]]:
    """Stage width indices in which every pair of consecutive stages takes every pair of
    values (9 patterns cover all 9 pairs at once for each of the three boundaries)."""
    n = len(WIDTH_MULTS)
    return [(a, b, (a + b) % n, (a + 2 * b) % n) for a in range(n) for b in range(n)]

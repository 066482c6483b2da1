"""Every supernet family through one door: MobileNetV3 and ProxylessNAS (`SubnetConfig`,
`ofa.space.FAMILIES`) and OFA-ResNet50 (`ofa.resnet.ResNetConfig`). A JSON object naming
`"family": "resnet50"` is a ResNet50 subnet, anything else a `SubnetConfig` (which also
reads published net.configs). Campaigns, export and `describe` take any family from here."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ofa import jsonfile, space
from ofa.accuracy import AccuracyPredictor, read_torch_state
from ofa.config import SubnetConfig, read_configs, sample_configs
from ofa.plan import AnyConfig, LayerSpec, space_lut_specs
from ofa.resnet import FAMILY as RESNET50
from ofa.resnet import ResNetAccuracyPredictor, ResNetConfig, resnet_lut_specs

__all__ = [
    "FAMILY_NAMES",
    "WIDTHS",
    "config_from_dict",
    "config_from_json",
    "config_from_file",
    "load_any_configs",
    "sample_any",
    "lut_specs",
    "load_accuracy_predictor",
]

FAMILY_NAMES = (*space.FAMILIES, RESNET50)
# Supernet widths per family. ResNet50's width multipliers are per subnet (its `w`); its
# supernet has one width, written 1.0 wherever a width is asked for.
WIDTHS = {**{f.name: f.width_choices for f in space.FAMILIES.values()}, RESNET50: (1.0,)}


def config_from_dict(data: Any) -> AnyConfig:
    if isinstance(data, Mapping) and data.get("family") == RESNET50:
        return ResNetConfig.from_dict(data)
    return SubnetConfig.from_dict(data)


def config_from_json(text: str) -> AnyConfig:
    return config_from_dict(jsonfile.parse(text, "config"))


def config_from_file(path: str | Path) -> AnyConfig:
    """One config of any family from a JSON file (a published net.config too)."""
    data = jsonfile.read(Path(path))
    if isinstance(data, Mapping) and data.get("family") == RESNET50:
        try:
            return ResNetConfig.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return SubnetConfig.from_file(path)


def load_any_configs(path: str | Path) -> list[AnyConfig]:
    """Configs of any family from a JSON or JSONL file (see `ofa.config.read_configs`)."""
    return list(read_configs(path, config_from_dict))


def check_family(family: Any, width: Any) -> None:
    """A ValueError naming the field unless `family` is one and `width` one of its widths."""
    if family not in FAMILY_NAMES:
        raise ValueError(f"family: expected one of {', '.join(FAMILY_NAMES)}, got {family!r}")
    if width not in WIDTHS[family]:
        raise ValueError(f"width: expected one of {WIDTHS[family]} for {family}, got {width!r}")


def sample_any(
    n: int, seed: int, resolutions: Sequence[int], width: float, family: str
) -> list[AnyConfig]:
    """`n` configs of `family` drawn with their own RNG (same seed, same list)."""
    if family != RESNET50:
        return list(sample_configs(n, seed, resolutions, width, family))
    rng = random.Random(seed)
    return [ResNetConfig.sample(rng, resolutions) for _ in range(n)]


def lut_specs(r: int, width: float, family: str) -> list[LayerSpec]:
    """Every distinct LUT entry some subnet of `family` needs at resolution `r`."""
    return resnet_lut_specs(r) if family == RESNET50 else space_lut_specs(r, width, family)


def load_accuracy_predictor(path: str | Path) -> AccuracyPredictor | ResNetAccuracyPredictor:
    """The accuracy predictor in `path`: the authors' ResNet50 one (a `.pth` holding
    `base_acc`), or a MobileNetV3 one (their `.pth` or our `.npz`)."""
    path = Path(path)
    if path.suffix == ".npz":
        return AccuracyPredictor.load(path)
    state = read_torch_state(path, "0/2/4/6 .weight/.bias, or layers.* and base_acc")
    if "base_acc" in state:
        return ResNetAccuracyPredictor.from_state_dict(state)
    return AccuracyPredictor.from_state_dict(state)

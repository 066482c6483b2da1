"""Subnet configs of every supernet family through one door: a JSON object naming
`"family": "resnet50"` is an OFA-ResNet50 subnet (`ofa.resnet.ResNetConfig`), anything else
a MobileNetV3 or ProxylessNAS `SubnetConfig` (which also reads published net.configs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ofa import jsonfile
from ofa.config import SubnetConfig
from ofa.plan import AnyConfig
from ofa.resnet import FAMILY as RESNET50
from ofa.resnet import ResNetConfig

__all__ = ["config_from_dict", "config_from_file"]


def config_from_dict(data: Any) -> AnyConfig:
    if isinstance(data, Mapping) and data.get("family") == RESNET50:
        return ResNetConfig.from_dict(data)
    return SubnetConfig.from_dict(data)


def config_from_file(path: str | Path) -> AnyConfig:
    """One config of any family from a JSON file (a published net.config too)."""
    data = jsonfile.read(Path(path))
    if isinstance(data, Mapping) and data.get("family") == RESNET50:
        try:
            return ResNetConfig.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return SubnetConfig.from_file(path)

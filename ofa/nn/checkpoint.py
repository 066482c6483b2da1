"""Loading official OFA checkpoints (and ours) without pickle.

Key remapping is one pure function; the loader loads strictly and says exactly what did not
match, instead of the reference's chain of string replacements inside the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ofa import space
from ofa.nn.resnet_supernet import OFAResNet50
from ofa.nn.supernet import SUPERNETS, ElasticSupernet

__all__ = [
    "remap_state_dict_keys",
    "read_state_dict",
    "load_checkpoint",
    "save_checkpoint",
    "load_supernet",
]

_OLD_NAMES = ((".mobile_inverted_conv.", ".conv."),)


def remap_state_dict_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Current key names for a state dict: pre-2020 OFA names (`.mobile_inverted_conv.`)
    become `.conv.`, and a DistributedDataParallel `module.` prefix is dropped."""
    remapped = {}
    for key, value in state_dict.items():
        new = key[len("module.") :] if key.startswith("module.") else key
        for old, current in _OLD_NAMES:
            new = new.replace(old, current)
        remapped[new] = value
    return remapped


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (`{"state_dict": ...}` or a bare state dict), remapped."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a loadable weights-only torch checkpoint ({exc})") from None
    if isinstance(data, Mapping) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors or {{'state_dict': ...}}")
    return remap_state_dict_keys(data)


def load_checkpoint(model: nn.Module, path: str | Path, max_listed: int = 10) -> None:
    """Load `path` into `model` strictly; a mismatch is a `ValueError` listing the missing,
    unexpected and wrongly shaped keys."""
    _load_strict(model, read_state_dict(path), path, max_listed)


def _load_strict(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, max_listed: int = 10
) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong_shape:

        def listed(name: str, keys: list[str]) -> str:
            more = f" (+{len(keys) - max_listed} more)" if len(keys) > max_listed else ""
            return f"{name} ({len(keys)}): {', '.join(keys[:max_listed])}{more}" if keys else ""

        problems = "; ".join(
            filter(
                None,
                (
                    listed("missing", missing),
                    listed("unexpected", unexpected),
                    listed("wrong shape", wrong_shape),
                ),
            )
        )
        raise ValueError(f"{path}: does not fit {type(model).__name__}: {problems}")
    model.load_state_dict(state, strict=True)


def load_mbconv_supernet(path: str | Path, dropout: float = 0.1) -> ElasticSupernet:
    """`load_supernet` for the commands that take MobileNetV3 (or ProxylessNAS) supernets
    only so far; an OFA-ResNet50 checkpoint is refused by name."""
    model = load_supernet(path, dropout)
    if not isinstance(model, ElasticSupernet):
        raise ValueError(
            f"{path}: an OFA-ResNet50 checkpoint; this takes MobileNetV3 or ProxylessNAS ones"
        )
    return model


def save_checkpoint(model: nn.Module, path: str | Path, **extra: torch.Tensor) -> None:
    """Write `{"state_dict": ...}` (the official layout), readable with `weights_only=True`."""
    torch.save({"state_dict": model.state_dict(), **extra}, Path(path))


def load_supernet(path: str | Path, dropout: float = 0.1) -> ElasticSupernet | OFAResNet50:
    """The supernet a checkpoint holds, its family and width (each published supernet's
    first conv has a number of filters of its own) and class count read off the weights."""
    state = read_state_dict(path)
    if "input_stem.0.conv.conv.weight" in state:  # OFA-ResNet50's stem
        resnet = OFAResNet50(dropout=dropout)
        classes = state.get("classifier.linear.linear.weight")
        if classes is not None:
            resnet = OFAResNet50(n_classes=classes.shape[0], dropout=dropout)
        _load_strict(resnet, state, path)
        return resnet
    try:
        first, classes = state["first_conv.conv.weight"], state["classifier.linear.weight"]
    except KeyError as exc:
        raise ValueError(f"{path}: not an OFA supernet checkpoint (no {exc})") from None
    supernets = space.supernets_by_first_conv()
    if first.shape[0] not in supernets:
        known = ", ".join(f"{n} ({f.title} w{w})" for n, (f, w) in supernets.items())
        raise ValueError(
            f"{path}: first_conv has {first.shape[0]} filters, which is no supported "
            f"supernet's ({known})"
        )
    family, width = supernets[first.shape[0]]
    model = SUPERNETS[family.name](width, n_classes=classes.shape[0], dropout=dropout)
    _load_strict(model, state, path)
    return model

"""Subnet configurations: one validated, canonical, hashable value per OFA MobileNetV3 subnet.

A config is what the fleet measures, the predictors score and the search mutates, so it is
plain data (a frozen dataclass of tuples) with exactly one parser. Two spellings of one
subnet (different values in blocks that depth skips, `"r": [224]` against `"r": 224`) give
equal configs with equal ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ofa import space

__all__ = ["SubnetConfig", "sample_configs", "space_size", "load_configs"]


def _check_int(field: str, value: Any, allowed: Sequence[int] | None = None,
               bounds: tuple[int, int] | None = None, index: int | None = None) -> int:
    where = f"{field}[{index}]" if index is not None else field
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            expected = (f"one of {', '.join(map(str, allowed))}" if allowed
                        else f"an integer in {bounds[0]}..{bounds[1]}")
            raise ValueError(f"{where}: expected {expected}, got {value!r} "
                             f"({type(value).__name__})")
    if allowed is not None and value not in allowed:
        raise ValueError(f"{where}: expected one of {', '.join(map(str, allowed))}, got {value}")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{where}: expected an integer in {bounds[0]}..{bounds[1]}, got {value}")
    return value


def _check_list(field: str, value: Any, length: int, allowed: Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{field}: expected a list of {length} integers from "
                         f"{{{', '.join(map(str, allowed))}}}, got {value!r}")
    if len(value) != length:
        raise ValueError(f"{field}: expected {length} entries, got {len(value)}")
    return tuple(_check_int(field, v, allowed, index=i) for i, v in enumerate(value))


def _check_width(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"w: expected one of {space.WIDTH_CHOICES}, got {value!r}")
    for choice in space.WIDTH_CHOICES:
        if abs(float(value) - choice) < 1e-9:
            return choice
    raise ValueError(f"w: expected one of {space.WIDTH_CHOICES}, got {value!r}")


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet: kernel size and expand ratio per elastic block, depth per stage,
    input resolution, and the width multiplier of the supernet it belongs to.

    Construction validates and canonicalises: entries of blocks that depth skips are set
    to the smallest choice, so equal subnets compare (and hash) equal.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int = 224
    w: float = 1.0

    def __post_init__(self) -> None:
        d = _check_list("d", self.d, space.N_STAGES, space.DEPTH_CHOICES)
        ks = _check_list("ks", self.ks, space.N_BLOCKS, space.KERNEL_CHOICES)
        e = _check_list("e", self.e, space.N_BLOCKS, space.EXPAND_CHOICES)
        r = _check_int("r", self.r, bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION))
        w = _check_width(self.w)
        active = [self._block_active(b, d) for b in range(space.N_BLOCKS)]
        ks = tuple(k if on else min(space.KERNEL_CHOICES) for k, on in zip(ks, active))
        e = tuple(x if on else min(space.EXPAND_CHOICES) for x, on in zip(e, active))
        for name, value in (("ks", ks), ("e", e), ("d", d), ("r", r), ("w", w)):
            object.__setattr__(self, name, value)

    @staticmethod
    def _block_active(block: int, depths: Sequence[int]) -> bool:
        return block % space.MAX_DEPTH < depths[space.stage_of(block)]

    # ------------------------------------------------------------------ views
    def is_active(self, block: int) -> bool:
        """Whether elastic block `block` (0..19) runs in this subnet."""
        return self._block_active(block, self.d)

    @property
    def active_blocks(self) -> list[int]:
        """Indices (0..19) of the elastic blocks that run, in order."""
        return [b for b in range(space.N_BLOCKS) if self.is_active(b)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict in OFA's spelling plus our `w` (e.g. for `set_active_subnet`)."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r, "w": self.w}

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces. Equal subnets give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """A stable 12-hex-digit id of the canonical form."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> "SubnetConfig":
        """A copy with some fields changed (validated again)."""
        fields = self.to_dict()
        fields.update(changes)
        return SubnetConfig(**fields)

    # ---------------------------------------------------------------- parsing
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, w: float | None = None) -> "SubnetConfig":
        """Parse our JSON or OFA's (`"r": [224]`, `"image_size"`, `"width_mult"`).

        `w` is used when the data does not name a width; the default width is 1.0.
        Unknown keys are refused so that a typo cannot silently fall back to a default.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected a JSON object, got {type(data).__name__}")
        if "blocks" in data:
            return cls.from_net_config(data)
        known = {"ks", "e", "d", "r", "image_size", "w", "width_mult"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {', '.join(unknown)}; "
                             f"expected {', '.join(sorted(known))}")
        for name in ("ks", "e", "d"):
            if name not in data:
                raise ValueError(f"{name}: missing (a subnet needs ks, e, d and r)")
        if "r" in data and "image_size" in data:
            raise ValueError("r: given twice (as 'r' and 'image_size')")
        r = data.get("r", data.get("image_size"))
        if r is None:
            raise ValueError("r: missing (the input resolution, e.g. 224)")
        if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
            if len(r) != 1:
                raise ValueError(f"r: expected one resolution, got {list(r)!r}")
            r = r[0]
        width = data.get("w", data.get("width_mult", 1.0 if w is None else w))
        return cls(ks=data["ks"], e=data["e"], d=data["d"], r=r, w=width)

    @classmethod
    def from_json(cls, text: str, *, w: float | None = None) -> "SubnetConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config: not valid JSON ({exc})") from None
        return cls.from_dict(data, w=w)

    @classmethod
    def from_net_config(cls, net: Mapping[str, Any], image_size: int | None = None) -> "SubnetConfig":
        """Read an OFA `net.config` (a built MobileNetV3, old or new block naming)."""
        name = net.get("name")
        if name != "MobileNetV3":
            raise ValueError(f"net.config: name is {name!r}; only OFA MobileNetV3 subnets are "
                             "in this space (ProxylessNAS nets are not)")
        try:
            first_out = net["first_conv"]["out_channels"]
            blocks = [b.get("conv") or b["mobile_inverted_conv"] for b in net["blocks"]]
            shortcuts = [b.get("shortcut") for b in net["blocks"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"net.config: missing field {exc}") from None
        width = next((w for w in space.WIDTH_CHOICES if space.stage_widths(w)[0] == first_out), None)
        if width is None:
            raise ValueError(f"net.config: first_conv.out_channels is {first_out}; expected "
                             f"{space.stage_widths(1.0)[0]} (w1.0) or {space.stage_widths(1.2)[0]} (w1.2)")
        stages: list[list[Mapping[str, Any]]] = []
        for block, shortcut in zip(blocks[1:], shortcuts[1:]):
            if shortcut is None:
                stages.append([])
            if not stages:
                raise ValueError("net.config: blocks[1] must start a stage (no shortcut)")
            stages[-1].append(block)
        if len(stages) != space.N_STAGES:
            raise ValueError(f"net.config: expected {space.N_STAGES} stages after blocks[0], "
                             f"found {len(stages)}")
        widths = space.stage_widths(width)[2:7]
        ks, e, d = [], [], []
        for s, stage in enumerate(stages):
            if not 1 <= len(stage) <= space.MAX_DEPTH:
                raise ValueError(f"net.config: stage {s} has {len(stage)} blocks, expected "
                                 f"{min(space.DEPTH_CHOICES)}..{space.MAX_DEPTH}")
            for i, block in enumerate(stage):
                if block.get("out_channels") != widths[s]:
                    raise ValueError(f"net.config: stage {s} block {i} has out_channels "
                                     f"{block.get('out_channels')}, expected {widths[s]} for w{width}")
            d.append(len(stage))
            pad = space.MAX_DEPTH - len(stage)
            ks += [b.get("kernel_size") for b in stage] + [min(space.KERNEL_CHOICES)] * pad
            e += [b.get("expand_ratio") for b in stage] + [min(space.EXPAND_CHOICES)] * pad
        if image_size is None:
            image_size = net.get("image_size")
        if image_size is None:
            raise ValueError("r: net.config has no image size; pass it (run.config's image_size)")
        return cls(ks=ks, e=e, d=d, r=image_size, w=width)

    @classmethod
    def from_file(cls, path: str | Path) -> "SubnetConfig":
        """Read one config from a JSON file; for an OFA `net.config`, the image size comes
        from the `run.config` beside it when present."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        try:
            if isinstance(data, Mapping) and "blocks" in data:
                run_config = path.with_name("run.config")
                size = json.loads(run_config.read_text()).get("image_size") if run_config.exists() else None
                return cls.from_net_config(data, image_size=size)
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    # ---------------------------------------------------------------- special
    @classmethod
    def largest(cls, r: int = 224, w: float = 1.0) -> "SubnetConfig":
        return cls(ks=[max(space.KERNEL_CHOICES)] * space.N_BLOCKS,
                   e=[max(space.EXPAND_CHOICES)] * space.N_BLOCKS,
                   d=[max(space.DEPTH_CHOICES)] * space.N_STAGES, r=r, w=w)

    @classmethod
    def smallest(cls, r: int = 224, w: float = 1.0) -> "SubnetConfig":
        return cls(ks=[min(space.KERNEL_CHOICES)] * space.N_BLOCKS,
                   e=[min(space.EXPAND_CHOICES)] * space.N_BLOCKS,
                   d=[min(space.DEPTH_CHOICES)] * space.N_STAGES, r=r, w=w)

    @classmethod
    def sample(cls, rng: random.Random, resolutions: Sequence[int] = (224,),
               w: float = 1.0) -> "SubnetConfig":
        """Uniform per choice, like OFA's `sample_active_subnet`."""
        return cls(ks=[rng.choice(space.KERNEL_CHOICES) for _ in range(space.N_BLOCKS)],
                   e=[rng.choice(space.EXPAND_CHOICES) for _ in range(space.N_BLOCKS)],
                   d=[rng.choice(space.DEPTH_CHOICES) for _ in range(space.N_STAGES)],
                   r=rng.choice(list(resolutions)), w=w)


def sample_configs(n: int, seed: int, resolutions: Sequence[int] = (224,),
                   w: float = 1.0) -> list[SubnetConfig]:
    """`n` configs drawn with their own RNG (same seed, same list; the global RNG is untouched)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    return [SubnetConfig.sample(rng, resolutions, w) for _ in range(n)]


def space_size(n_resolutions: int = 1) -> int:
    """Number of distinct subnets (canonical forms) times the number of resolutions."""
    per_block = len(space.KERNEL_CHOICES) * len(space.EXPAND_CHOICES)
    per_stage = sum(per_block ** depth for depth in space.DEPTH_CHOICES)
    return per_stage ** space.N_STAGES * n_resolutions


def load_configs(path: str | Path) -> list[SubnetConfig]:
    """Configs from a JSON file (one object or a list) or a JSONL file (one per line)."""
    path = Path(path)
    text = path.read_text()
    try:
        data = json.loads(text)
        items: Iterable[Any] = data if isinstance(data, list) else [data]
        if isinstance(data, Mapping) and "blocks" in data:
            return [SubnetConfig.from_file(path)]
    except json.JSONDecodeError:
        items = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from None
    configs = []
    for i, item in enumerate(items):
        try:
            configs.append(SubnetConfig.from_dict(item))
        except ValueError as exc:
            raise ValueError(f"{path}: entry {i}: {exc}") from None
    return configs

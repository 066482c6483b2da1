"""Subnet configurations: one validated, canonical, hashable value per subnet of an OFA
supernet family (`ofa.space.FAMILIES`: MobileNetV3, ProxylessNAS).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ofa import jsonfile, space

__all__ = [
    "SubnetConfig",
    "checked_fields",
    "sample_configs",
    "space_size",
    "load_configs",
    "check_int",
    "check_width",
    "show",
]


T = TypeVar("T")


def show(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: error messages never echo unbounded input."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(
    field: str,
    value: Any,
    allowed: Sequence[int] | None = None,
    bounds: tuple[int, int] | None = None,
    index: int | None = None,
) -> int:
    """`value` as an int, or a ValueError naming `field[index]` and what it may be. Also
    the message of ConfigBatch, which checks whole arrays and reports their first bad entry."""
    where = f"{field}[{index}]" if index is not None else field
    if allowed is not None:
        expected = f"one of {', '.join(map(str, allowed))}"
    elif bounds is not None:
        expected = f"an integer in {bounds[0]}..{bounds[1]}"
    else:
        raise TypeError("check_int: give `allowed` or `bounds`")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(
                f"{where}: expected {expected}, got {show(value)} ({type(value).__name__})"
            )
    if (allowed is not None and value not in allowed) or (
        bounds is not None and not bounds[0] <= value <= bounds[1]
    ):
        raise ValueError(f"{where}: expected {expected}, got {show(value)}")
    return value


def _check_list(field: str, value: Any, length: int, allowed: Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(
            f"{field}: expected a list of {length} integers from "
            f"{{{', '.join(map(str, allowed))}}}, got {show(value)}"
        )
    if len(value) != length:
        raise ValueError(f"{field}: expected {length} entries, got {len(value)}")
    return tuple(check_int(field, v, allowed, index=i) for i, v in enumerate(value))


def check_width(value: Any, family: space.Family = space.MOBILENET_V3) -> float:
    """One of the family's widths (exactly, so equal subnets hash equal)."""
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        for choice in family.width_choices:
            if abs(float(value) - choice) < 1e-9:
                return choice
    raise ValueError(
        f"w: expected one of {family.width_choices} for {family.title}, got {show(value)}"
    )


def _block_active(family: space.Family, block: int, depths: Sequence[int]) -> bool:
    if block >= family.n_stages * family.max_depth:
        return True  # a tail block: it always runs
    return block % family.max_depth < depths[block // family.max_depth]


def checked_fields(
    data: Mapping[str, Any], known: set[str], required: Sequence[str], what: str
) -> Any:
    """The resolution of a config's JSON (`r`, `image_size`, or OFA's `[r]`), after refusing
    unknown keys (a typo must not fall back to a default) and missing `required` ones; `what`
    names the config in messages ("a subnet")."""
    unknown = [key for key in data if key not in known]
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ValueError(
            f"config: unknown field(s) {', '.join(map(show, unknown[:3]))}"
            f"{more}; expected {', '.join(sorted(known))}"
        )
    for name in required:
        if name not in data:
            raise ValueError(f"{name}: missing ({what} needs {', '.join(required)} and r)")
    if "r" in data and "image_size" in data:
        raise ValueError("r: given twice (as 'r' and 'image_size')")
    r = data.get("r", data.get("image_size"))
    if r is None:
        raise ValueError("r: missing (the input resolution, e.g. 224)")
    if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
        if len(r) != 1:
            raise ValueError(f"r: expected one resolution, got {show(list(r))}")
        r = r[0]
    return r


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet: kernel size and expand ratio per elastic block, depth per elastic stage,
    input resolution, the width multiplier of the supernet it belongs to, and its family
    (`ofa.space.FAMILIES`; MobileNetV3's 20 blocks and 5 depths by default).

    Construction validates and canonicalises: entries of blocks that depth skips are set
    to the smallest choice, so equal subnets compare (and hash) equal.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int = 224
    w: float = 1.0
    family: str = space.MOBILENET_V3.name

    def __post_init__(self) -> None:
        family = space.family_named(self.family)
        d = _check_list("d", self.d, family.n_stages, family.depth_choices)
        ks = _check_list("ks", self.ks, family.n_blocks, family.kernel_choices)
        e = _check_list("e", self.e, family.n_blocks, family.expand_choices)
        r = check_int("r", self.r, bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION))
        w = check_width(self.w, family)
        active = [_block_active(family, b, d) for b in range(family.n_blocks)]
        ks = tuple(
            k if on else min(family.kernel_choices) for k, on in zip(ks, active, strict=True)
        )
        e = tuple(x if on else min(family.expand_choices) for x, on in zip(e, active, strict=True))
        for name, value in (("ks", ks), ("e", e), ("d", d), ("r", r), ("w", w)):
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ views
    @property
    def family_space(self) -> space.Family:
        """The design space of this subnet's family."""
        return space.FAMILIES[self.family]

    @property
    def supernet(self) -> str:
        """The supernet this subnet is taken from (`ofa_mbv3_d234_e346_k357_w1.2`, ...)."""
        return self.family_space.supernet(self.w)

    def is_active(self, block: int) -> bool:
        """Whether elastic block `block` (0..19 for MobileNetV3) runs in this subnet."""
        return _block_active(self.family_space, block, self.d)

    @property
    def active_blocks(self) -> list[int]:
        """Indices of the elastic blocks that run, in order."""
        return [b for b in range(self.family_space.n_blocks) if self.is_active(b)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict in OFA's spelling plus our `w` (e.g. for `set_active_subnet`),
        and `family` for a family other than MobileNetV3 (whose ids stay those of before)."""
        fields = {
            "ks": list(self.ks),
            "e": list(self.e),
            "d": list(self.d),
            "r": self.r,
            "w": self.w,
        }
        if self.family != space.MOBILENET_V3.name:
            fields["family"] = self.family
        return fields

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces. Equal subnets give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """A stable 12-hex-digit id of the canonical form."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> SubnetConfig:
        """A copy with some fields changed (validated again)."""
        fields = self.to_dict()
        fields.update(changes)
        return SubnetConfig(**fields)

    # ---------------------------------------------------------------- parsing
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, w: float | None = None) -> SubnetConfig:
        """Parse our JSON or OFA's (`"r": [224]`, `"image_size"`, `"width_mult"`).

        `w` is used when the data does not name a width; the default is the family's first
        (1.0 for MobileNetV3, the default family).
        Unknown keys are refused so that a typo cannot silently fall back to a default.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected a JSON object, got {type(data).__name__}")
        if "blocks" in data:
            return cls.from_net_config(data)
        known = {"ks", "e", "d", "r", "image_size", "w", "width_mult", "family"}
        if data.get("family") == "resnet50":
            raise ValueError(
                "family: ResNet50 subnets are not taken here yet (describe, export and "
                "campaigns take them)"
            )
        r = checked_fields(data, known, ("ks", "e", "d"), "a subnet")
        family = space.family_named(data.get("family", space.MOBILENET_V3.name))
        width = data.get("w", data.get("width_mult", family.width_choices[0] if w is None else w))
        return cls(ks=data["ks"], e=data["e"], d=data["d"], r=r, w=width, family=family.name)

    @classmethod
    def from_json(cls, text: str, *, w: float | None = None) -> SubnetConfig:
        return cls.from_dict(jsonfile.parse(text, "config"), w=w)

    @classmethod
    def from_net_config(cls, net: Mapping[str, Any], image_size: int | None = None) -> SubnetConfig:
        """Read an OFA `net.config` of any family (old or new block naming)."""
        if not isinstance(net, Mapping):
            raise ValueError(f"net.config: expected a JSON object, got {type(net).__name__}")
        name = net.get("name")
        family = next((f for f in space.FAMILIES.values() if f.net_config_name == name), None)
        if family is None:
            names = ", ".join(f.net_config_name for f in space.FAMILIES.values())
            raise ValueError(f"net.config: name is {show(name)}; expected one of {names}")
        first_conv, raw = net.get("first_conv"), net.get("blocks")
        if not isinstance(first_conv, Mapping) or "out_channels" not in first_conv:
            raise ValueError("net.config: first_conv.out_channels: missing")
        if not isinstance(raw, list) or not all(isinstance(b, Mapping) for b in raw):
            raise ValueError("net.config: blocks: expected a list of block objects")
        blocks = [b.get("conv") or b.get("mobile_inverted_conv") for b in raw]
        for i, block in enumerate(blocks):
            if not isinstance(block, Mapping):
                raise ValueError(
                    f"net.config: blocks[{i}]: expected a 'conv' (or 'mobile_inverted_conv') object"
                )
        shortcuts = [b.get("shortcut") for b in raw]
        first_out = first_conv["out_channels"]
        width = next(
            (w for w in family.width_choices if family.stage_widths(w)[0] == first_out), None
        )
        if width is None:
            expected = " or ".join(
                f"{family.stage_widths(w)[0]} (w{w})" for w in family.width_choices
            )
            raise ValueError(
                f"net.config: first_conv.out_channels is {show(first_out)}; expected {expected}"
            )
        stages: list[list[Mapping[str, Any]]] = []
        for block, shortcut in zip(blocks[1:], shortcuts[1:], strict=True):
            if shortcut is None:
                stages.append([])
            if not stages:
                raise ValueError("net.config: blocks[1] must start a stage (no shortcut)")
            stages[-1].append(block)
        n_stages = family.n_stages + (1 if family.tail_blocks else 0)
        if len(stages) != n_stages:
            raise ValueError(
                f"net.config: expected {n_stages} stages after blocks[0], found {len(stages)}"
            )
        widths = family.stage_widths(width)[2 : 2 + n_stages]
        ks: list[Any] = []  # as the file has them; the constructor checks them
        e: list[Any] = []
        d: list[int] = []
        for s, stage in enumerate(stages):
            tail = s == family.n_stages
            low, high = (
                (family.tail_blocks,) * 2 if tail else (min(family.depth_choices), family.max_depth)
            )
            if not 1 <= len(stage) <= high:
                raise ValueError(
                    f"net.config: stage {s} has {len(stage)} blocks, expected {low}..{high}"
                )
            for i, block in enumerate(stage):
                if block.get("out_channels") != widths[s]:
                    raise ValueError(
                        f"net.config: stage {s} block {i} has out_channels "
                        f"{show(block.get('out_channels'))}, expected {widths[s]} "
                        f"for w{width}"
                    )
            pad = 0 if tail else family.max_depth - len(stage)
            d += [] if tail else [len(stage)]
            ks += [b.get("kernel_size") for b in stage] + [min(family.kernel_choices)] * pad
            e += [b.get("expand_ratio") for b in stage] + [min(family.expand_choices)] * pad
        if image_size is None:
            image_size = net.get("image_size")
        if image_size is None:
            raise ValueError("r: net.config has no image size; pass it (run.config's image_size)")
        return cls(ks=tuple(ks), e=tuple(e), d=tuple(d), r=image_size, w=width, family=family.name)

    @classmethod
    def from_file(cls, path: str | Path) -> SubnetConfig:
        """Read one config from a JSON file; for an OFA `net.config`, the image size comes
        from the `run.config` beside it when present."""
        path = Path(path)
        data = jsonfile.read(path)
        net_config = isinstance(data, Mapping) and "blocks" in data
        size = _image_size_beside(path) if net_config else None
        try:
            return cls.from_net_config(data, image_size=size) if net_config else cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    # ---------------------------------------------------------------- special
    @classmethod
    def largest(cls, r: int = 224, w: float = 1.0, family: str = "mbv3") -> SubnetConfig:
        return cls._uniform(max, r, w, family)

    @classmethod
    def smallest(cls, r: int = 224, w: float = 1.0, family: str = "mbv3") -> SubnetConfig:
        return cls._uniform(min, r, w, family)

    @classmethod
    def _uniform(
        cls, pick: Callable[[tuple[int, ...]], int], r: int, w: float, family: str
    ) -> SubnetConfig:
        f = space.family_named(family)
        return cls(
            ks=(pick(f.kernel_choices),) * f.n_blocks,
            e=(pick(f.expand_choices),) * f.n_blocks,
            d=(pick(f.depth_choices),) * f.n_stages,
            r=r,
            w=w,
            family=family,
        )

    @classmethod
    def sample(
        cls,
        rng: random.Random,
        resolutions: Sequence[int] = (224,),
        w: float = 1.0,
        family: str = "mbv3",
    ) -> SubnetConfig:
        """Uniform per choice, like OFA's `sample_active_subnet`."""
        f = space.family_named(family)
        return cls(
            ks=tuple(rng.choice(f.kernel_choices) for _ in range(f.n_blocks)),
            e=tuple(rng.choice(f.expand_choices) for _ in range(f.n_blocks)),
            d=tuple(rng.choice(f.depth_choices) for _ in range(f.n_stages)),
            r=rng.choice(list(resolutions)),
            w=w,
            family=family,
        )


def _image_size_beside(net_config: Path) -> Any:
    """`image_size` of the `run.config` beside a published `net.config`, if there is one."""
    run_config = net_config.with_name("run.config")
    if not run_config.exists():
        return None
    run = jsonfile.read(run_config)
    if not isinstance(run, Mapping):
        raise ValueError(f"{run_config}: expected a JSON object, got {type(run).__name__}")
    return run.get("image_size")


def sample_configs(
    n: int, seed: int, resolutions: Sequence[int] = (224,), w: float = 1.0, family: str = "mbv3"
) -> list[SubnetConfig]:
    """`n` configs drawn with their own RNG (same seed, same list; the global RNG is untouched)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {show(n)}")
    rng = random.Random(seed)
    return [SubnetConfig.sample(rng, resolutions, w, family) for _ in range(n)]


def space_size(n_resolutions: int = 1, family: str = "mbv3") -> int:
    """Number of distinct subnets (canonical forms) times the number of resolutions."""
    f = space.family_named(family)
    per_block = len(f.kernel_choices) * len(f.expand_choices)
    per_stage = sum(per_block**depth for depth in f.depth_choices)
    return per_stage**f.n_stages * per_block**f.tail_blocks * n_resolutions


def load_configs(path: str | Path) -> list[SubnetConfig]:
    """Configs from a JSON file (one object or a list) or a JSONL file (one per line)."""
    return read_configs(path, SubnetConfig.from_dict)


def read_configs(path: str | Path, parse: Callable[[Any], T]) -> list[T | SubnetConfig]:
    """`parse` of each entry of a JSON file (one object or a list) or a JSONL file (one per
    line), each bad one named by its position; a published net.config is one config."""
    path = Path(path)
    text = jsonfile.read_text(path)
    try:
        data = jsonfile.parse(text, str(path))
    except ValueError:  # not one JSON value: JSON lines, each named by its number if bad
        items: Iterable[Any] = [
            jsonfile.parse(line, f"{path}:{lineno}")
            for lineno, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    else:
        if isinstance(data, Mapping) and "blocks" in data:
            return [SubnetConfig.from_file(path)]
        items = data if isinstance(data, list) else [data]
    configs: list[T | SubnetConfig] = []
    for i, item in enumerate(items):
        try:
            configs.append(parse(item))
        except ValueError as exc:
            raise ValueError(f"{path}: entry {i}: {exc}") from None
    return configs

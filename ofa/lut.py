"""Latency lookup tables in OFA's format: `{r}_lookup_table.yaml`, one per resolution,
each key mapping to `{count, mean, std}` in milliseconds. A network's latency under OFA's
model is the sum of its layers' means; a key that is missing is an error, never a zero."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ofa.plan import AnyConfig, lut_keys

__all__ = ["LatencyTable"]

_FILE = re.compile(r"^(\d+)_lookup_table\.yaml$")
# libyaml's safe loader where PyYAML was built with it: 10x faster on OFA's tables (Note10's
# five take 0.14 s in pure Python), the same documents and the same refusals.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class LatencyTable:
    """Per-resolution tables: `entries[r][key] = {"count", "mean", "std"}` (ms)."""

    entries: Mapping[int, Mapping[str, Mapping[str, float]]]

    @classmethod
    def from_ofa_yaml(cls, folder: str | Path) -> LatencyTable:
        folder = Path(folder)
        entries = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            match = _FILE.match(path.name)
            if match:
                table = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
                if not isinstance(table, Mapping):
                    raise ValueError(f"{path}: expected a mapping of LUT keys")
                entries[int(match.group(1))] = table
        if not entries:
            raise ValueError(f"{folder}: no {{r}}_lookup_table.yaml files found")
        return cls(entries)

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.entries)

    def means(self) -> dict[int, dict[str, float]]:
        """`{r: {key: mean ms}}`, the form `BlockTable.from_lut` takes."""
        return {
            r: {key: float(v["mean"]) for key, v in table.items()}
            for r, table in self.entries.items()
        }

    def missing_keys(self, config: AnyConfig) -> list[str]:
        table = self.entries.get(config.r, {})
        return [key for key in lut_keys(config) if key not in table]

    def predict_ms(self, config: AnyConfig) -> float:
        """OFA's latency estimate of `config`: the sum of its LUT entries' means."""
        if config.r not in self.entries:
            raise ValueError(
                f"r: no table for resolution {config.r}; tables exist for {self.resolutions}"
            )
        missing = self.missing_keys(config)
        if missing:
            raise ValueError(
                f"config {config.id} ({config.supernet}, r={config.r}): "
                f"{len(missing)} LUT key(s) missing, first {missing[0]}"
            )
        table = self.entries[config.r]
        return float(sum(table[key]["mean"] for key in lut_keys(config)))

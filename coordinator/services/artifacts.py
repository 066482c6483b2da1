"""ONNX artifacts for campaign items, built once per (kind, key, weights) and reused across
campaigns and devices. Building needs torch; everything else in the coordinator does not."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from importlib import resources

from coordinator.services.jobs import model_inputs
from coordinator.services.progress import OnProgress, quiet
from coordinator.state import Artifact, BlobStore, Store
from ofa.config import SubnetConfig
from ofa.plan import LayerSpec

__all__ = ["Item", "ArtifactBuilder", "REFERENCE_KEY"]

REFERENCE_KEY = "agent-reference"
RANDOM_WEIGHTS = "seed0"  # latency does not depend on weight values
KIND_NAMES = {"lut": "LUT entries", "subnet": "subnets", "reference": "reference"}
EXPORTED_CACHE_BYTES = 512 * 2**20


class _Exported:
    """The models this process exported, newest kept, up to `limit` bytes in all. Export is
    deterministic, so a process that builds for several databases (the demo, a notebook, a
    test session) exports each model once; a database's own cache (`Store.cached_artifact`)
    serves its later campaigns and other processes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.models: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        if key in self.models:
            self.models.move_to_end(key)
        return self.models.get(key)

    def put(self, key: tuple[str, str, str], model: bytes) -> None:
        if key in self.models or len(model) > self.limit:
            return
        self.models[key] = model
        self.size += len(model)
        while self.size > self.limit:
            self.size -= len(self.models.popitem(last=False)[1])


_EXPORTED = _Exported(EXPORTED_CACHE_BYTES)


@dataclass(frozen=True)
class Item:
    """One thing a campaign measures: a LUT entry, a whole subnet, or the drift reference."""

    kind: str  # "lut" | "subnet" | "reference"
    key: str  # LUT key, canonical subnet JSON, or REFERENCE_KEY
    r: int | None = None
    w: float | None = None
    layer: LayerSpec | None = None  # for "lut"
    subnet: SubnetConfig | None = None  # for "subnet"

    @classmethod
    def lut(cls, layer: LayerSpec, r: int, w: float) -> Item:
        return cls("lut", layer.lut_key, r, w, layer=layer)

    @classmethod
    def whole(cls, subnet: SubnetConfig) -> Item:
        return cls("subnet", subnet.to_json(), subnet.r, subnet.w, subnet=subnet)

    @classmethod
    def reference(cls) -> Item:
        return cls("reference", REFERENCE_KEY)


class ArtifactBuilder:
    """Digest and input shapes of each item's model, exporting only what is not cached."""

    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self.store, self.blobs = store, blobs
        self._supernets: dict[float, object] = {}

    def build_all(self, items: list[Item], progress: OnProgress = quiet) -> list[tuple[str, list]]:
        """Each item's model, in order. Exporting takes seconds a model, so `progress` hears
        of every one ("building models", with the count of each kind); cached models count
        as built from the start."""
        built = {i: found for i, item in enumerate(items) if (found := self.cached(item))}
        totals = Counter(KIND_NAMES[item.kind] for item in items)
        done = Counter(KIND_NAMES[items[i].kind] for i in built)

        def report() -> None:
            kinds = ", ".join(f"{kind} {done[kind]}/{n}" for kind, n in totals.items())
            progress("building models", len(built), len(items), kinds)

        report()
        for i, item in enumerate(items):
            if i not in built:
                built[i] = self.build(item)
                done[KIND_NAMES[item.kind]] += 1
                report()
        return [built[i] for i in range(len(items))]

    def cached(self, item: Item) -> tuple[str, list] | None:
        """The item's model digest and inputs if it was built before and its blob is kept."""
        found = self.store.cached_artifact(item.kind, item.key, self._weights(item))
        if found is not None and self.blobs.path(found.digest).exists():
            return found.digest, found.inputs
        return None

    def build(self, item: Item) -> tuple[str, list]:
        cached = self.cached(item)
        if cached is not None:
            return cached
        key = (item.kind, item.key, self._weights(item))
        model = _EXPORTED.get(key)
        if model is None:
            model = self._export(item)
            _EXPORTED.put(key, model)
        inputs = model_inputs(model)
        digest = self.blobs.put(model)
        artifact = Artifact(digest, inputs)
        self.store.cache_artifact(item.kind, item.key, self._weights(item), artifact)
        return digest, inputs

    @staticmethod
    def _weights(item: Item) -> str:
        return RANDOM_WEIGHTS if item.kind == "subnet" else "-"

    def _export(self, item: Item) -> bytes:
        if item.kind == "reference":
            return resources.files("agent").joinpath("data/reference.onnx").read_bytes()
        from ofa.nn.export import export_lut_entry, export_subnet  # torch only when exporting

        if item.layer is not None:  # "lut"
            return export_lut_entry(item.layer).onnx
        if item.subnet is not None:  # "subnet"
            return export_subnet(self._supernet(item.subnet.w), item.subnet).onnx
        raise ValueError(f"{item.kind} item {item.key}: carries no layer or subnet to export")

    def _supernet(self, width: float):
        if width not in self._supernets:
            import torch

            from ofa.nn.supernet import OFAMobileNetV3

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self._supernets[width] = OFAMobileNetV3(width).eval()
        return self._supernets[width]

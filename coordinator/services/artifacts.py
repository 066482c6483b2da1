"""Model artifacts for campaign items, built once per (kind, key, weights and export) and
reused across campaigns and devices. The export is the measurement target's (ONNX fp32, fp16
or int8, or TorchScript, at its batch size). Building needs torch; everything else in the
coordinator does not."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from importlib import resources

from coordinator.services.jobs import model_inputs
from coordinator.services.progress import OnProgress, quiet
from coordinator.services.targets import Target
from coordinator.state import Artifact, BlobStore, Store
from ofa.config import SubnetConfig
from ofa.plan import AnyConfig, LayerSpec

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
    subnet: AnyConfig | None = None  # for "subnet"

    @classmethod
    def lut(cls, layer: LayerSpec, r: int, w: float) -> Item:
        return cls("lut", layer.lut_key, r, w, layer=layer)

    @classmethod
    def whole(cls, subnet: AnyConfig) -> Item:
        """A whole subnet; `w` is its supernet's width (none for ResNet50, whose width
        multipliers are per subnet)."""
        width = subnet.w if isinstance(subnet, SubnetConfig) else None
        return cls("subnet", subnet.to_json(), subnet.r, width, subnet=subnet)

    @classmethod
    def reference(cls) -> Item:
        return cls("reference", REFERENCE_KEY)


class ArtifactBuilder:
    """Digest and input shapes of each item's model for `target`, exporting only what is not
    cached. The drift reference is one fixed fp32 ONNX model whatever the target."""

    def __init__(self, store: Store, blobs: BlobStore, target: Target | None = None) -> None:
        self.store, self.blobs, self.target = store, blobs, target or Target()
        self._supernets: dict[str, object] = {}

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
        inputs = self._inputs(item, model)
        digest = self.blobs.put(model)
        artifact = Artifact(digest, inputs)
        self.store.cache_artifact(item.kind, item.key, self._weights(item), artifact)
        return digest, inputs

    def _weights(self, item: Item) -> str:
        """The cache key's weights part: the weights and, for any export but ONNX fp32 at
        batch 1 (the key of every artifact cached before targets existed), the export."""
        if item.kind == "reference":
            return "-"
        weights = RANDOM_WEIGHTS if item.kind == "subnet" else "-"
        export = self.target.export_key
        return f"{weights}/{export}" if export else weights

    def _shape(self, item: Item) -> tuple[int, ...]:
        from ofa.nn.export import input_shape

        if item.layer is not None:
            return input_shape(item.layer, self.target.batch)
        if item.subnet is not None:
            return (self.target.batch, 3, item.subnet.r, item.subnet.r)
        raise ValueError(f"{item.kind} item {item.key}: carries no layer or subnet to export")

    def _inputs(self, item: Item, model: bytes) -> list[tuple[str, list[int]]]:
        """The model's input names and shapes: read from an ONNX graph; a TorchScript
        model's one input is the shape it was traced for."""
        if item.kind == "reference" or self.target.model_format == "onnx":
            return model_inputs(model)
        return [("input", list(self._shape(item)))]

    def _export(self, item: Item) -> bytes:
        if item.kind == "reference":
            return resources.files("agent").joinpath("data/reference.onnx").read_bytes()
        from ofa.nn.export import export_model, lut_entry_module  # torch only when exporting

        if item.layer is not None:  # "lut"
            module = lut_entry_module(item.layer)
        elif item.subnet is not None:  # "subnet"
            from ofa.nn.supernet import static_subnet

            module = static_subnet(self._supernet(item.subnet.supernet), item.subnet)
        else:
            raise ValueError(f"{item.kind} item {item.key}: carries no layer or subnet to export")
        target = self.target
        return export_model(module, self._shape(item), target.precision, target.model_format)

    def _supernet(self, name: str):
        if name not in self._supernets:
            from ofa.nn.supernet import seeded_supernet

            self._supernets[name] = seeded_supernet(name)  # RANDOM_WEIGHTS
        return self._supernets[name]

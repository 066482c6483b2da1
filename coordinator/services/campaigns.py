"""Profiling campaigns: "measure this workload on these devices", turned into jobs.

A campaign names its targets (device labels or agent ids; each measured separately), a
workload (`lut`: every LUT entry the space needs; `random`: N sampled subnets; `lut+random`:
both in one queue; `configs`: given subnets, from a file or held in the spec itself as
`CampaignSpec.subnets`), the measurement target (targets.py: runtime, provider, precision,
batch, threads) and the benchmark settings. Starting it queues every item `repeats`
times per target, in a shuffled order with the drift-reference model interleaved, so each
repeat lands in its own lease window and no kind of item is measured all in one stretch.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from coordinator.services.artifacts import ArtifactBuilder, Item
from coordinator.services.jobs import BenchOptions, make_spec
from coordinator.services.progress import OnProgress, quiet
from coordinator.services.targets import Target, pick_target, refuse_unserved
from coordinator.state import TERMINAL, BlobStore, Campaign, CampaignItem, Devices, NotFound, Store
from coordinator.timeago import ago
from ofa import space
from ofa.config import show
from ofa.zoo import check_family, config_from_json, load_any_configs, lut_specs, sample_any

__all__ = [
    "CampaignSpec",
    "create_campaign",
    "start_campaign",
    "cancel_campaign",
    "campaign_status",
    "list_campaigns",
    "render_progress",
    "unserved_targets",
    "target_campaigns",
    "campaigns_by_target",
    "WORKLOADS",
]

WORKLOADS = ("lut", "random", "configs", "lut+random")
MAX_NAME = 200
ID_PATTERN = re.compile(r"c[0-9a-f]{8}")  # campaign ids; names and ids share one lookup
# Integer settings: (lowest, highest). A campaign beyond these is a typo, not a plan.
INT_RANGES = {
    "count": (0, 100_000),
    "repeats": (1, 100),
    "reference_every": (0, 1_000_000),
    "max_attempts": (1, 100),
    "max_disturbed": (1, 100),
}
MAX_JOBS = 1_000_000


@dataclass(frozen=True)
class CampaignSpec:
    """What a campaign measures. The `configs` workload's subnets come from `configs_file`
    or, for callers that hold them in memory, `subnets` (canonical subnet JSON, stored in
    the spec itself)."""

    name: str
    targets: tuple[Devices, ...]
    workload: str
    resolutions: tuple[int, ...] = (224,)
    width: float = 1.0
    family: str = space.MOBILENET_V3.name  # of the lut and random workloads' subnets
    count: int = 0
    seed: int = 0
    configs_file: str | None = None
    subnets: tuple[str, ...] = ()
    repeats: int = 2
    reference_every: int = 25
    max_attempts: int = 3
    max_disturbed: int = 4  # disturbed measurements of a job before it ends `disturbed`
    options: BenchOptions = field(default_factory=BenchOptions)
    profile: bool = False  # also record each subnet's per-node kernel times (onnxruntime)
    precision: str = "fp32"  # of the exported models (the target's precision)
    batch: int = 1  # of the exported models' input

    @property
    def target(self) -> Target:
        """What it measures on (ValueError naming the field for a bad one)."""
        return Target.of(self.options, self.precision, self.batch)

    def validate(self, store: Store) -> list[Item]:
        """Raise ValueError naming the first bad field; touches nothing. Returns the items."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name: expected a non-empty campaign name")
        if len(self.name) > MAX_NAME or not self.name.isprintable():
            raise ValueError(
                f"name: expected at most {MAX_NAME} printable characters, "
                f"got {self.name[:MAX_NAME]!r}"
            )
        if ID_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"name: expected a name that does not look like a campaign id, got {self.name!r}"
            )
        _refuse_taken_name(store, self.name)
        if not self.targets:
            raise ValueError("targets: give at least one --label or --agent")
        registered = store.list_agents()
        labels = {label for agent in registered for label in agent["labels"]}
        agents = {agent["id"] for agent in registered}
        for devices in self.targets:
            if devices.label is not None and devices.label not in labels:
                known = ", ".join(sorted(labels)) or "none yet"
                raise ValueError(
                    f"targets: no registered agent has label {devices.label!r} "
                    f"(known labels: {known})"
                )
            if devices.agent is not None and devices.agent not in agents:
                raise ValueError(f"targets: no registered agent {devices.agent!r}")
        if self.workload not in WORKLOADS:
            raise ValueError(
                f"workload: expected one of {', '.join(WORKLOADS)}, got {self.workload!r}"
            )
        check_family(self.family, self.width)
        if self.workload != "configs":  # lut, random and lut+random use resolutions
            if not self.resolutions:
                raise ValueError("resolutions: expected at least one resolution")
            for i, r in enumerate(self.resolutions):
                if (
                    isinstance(r, bool)
                    or not isinstance(r, int)
                    or not (space.MIN_RESOLUTION <= r <= space.MAX_RESOLUTION)
                ):
                    raise ValueError(
                        f"resolutions[{i}]: expected an integer in "
                        f"{space.MIN_RESOLUTION}..{space.MAX_RESOLUTION}, got {r!r}"
                    )
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: expected an integer, got {value!r}")
            if "random" in self.workload and name == "count" and value < 1:
                raise ValueError(f"count: expected a positive number of subnets, got {value}")
            if value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
            if value > high:
                raise ValueError(f"{name}: expected an integer <= {high}, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")
        BenchOptions.from_dict(asdict(self.options))  # settings built in Python are checked too
        target = self.target  # checks precision and batch
        if not isinstance(self.profile, bool):
            raise ValueError(f"profile: expected true or false, got {show(self.profile)}")
        if self.profile and self.workload == "lut":
            raise ValueError(
                "profile: only whole subnets are profiled, and the lut workload has none "
                "(profile them with --workload random, configs or lut+random)"
            )
        if self.profile and self.options.runtime != "onnxruntime":
            raise ValueError(
                f"profile: per-node profiles come from onnxruntime, and this campaign's "
                f"runtime is {self.options.runtime}"
            )
        if self.workload == "configs" and not self.configs_file and not self.subnets:
            raise ValueError("configs_file: the configs workload needs a JSON/JSONL file")
        if self.subnets and self.workload != "configs":
            raise ValueError(
                f"subnets: only the configs workload measures given subnets, not {self.workload}"
            )
        for i, subnet in enumerate(self.subnets):
            try:
                canonical = isinstance(subnet, str) and config_from_json(subnet).to_json() == subnet
            except ValueError as exc:
                raise ValueError(f"subnets[{i}]: {exc}") from None
            if not canonical:
                raise ValueError(
                    f"subnets[{i}]: expected a subnet's canonical JSON "
                    f"(SubnetConfig.to_json), got {show(subnet)}"
                )
        refuse_unserved(registered, self.targets, target)
        try:
            items = self.items()  # a configs file that does not parse fails here
        except OSError as exc:
            raise ValueError(
                f"configs_file: cannot read {self.configs_file}: {exc.strerror or exc}"
            ) from None
        if not items:
            raise ValueError(f"workload: the {self.workload} workload has nothing to measure")
        jobs = len(items) * self.repeats * len(self.targets)
        if jobs > MAX_JOBS:
            raise ValueError(
                f"workload: {len(items)} items x {self.repeats} repeats x "
                f"{len(self.targets)} targets make {jobs} jobs; at most {MAX_JOBS} "
                "per campaign"
            )
        return items

    def items(self) -> list[Item]:
        """The workload as items, in a stable order (duplicates removed). `lut+random`
        measures both in one shuffled queue, so LUT entries and whole subnets see the same
        machine state (what a latency predictor trained on both needs)."""
        items = []
        if "lut" in self.workload:
            items += [
                Item.lut(layer, r, self.width)
                for r in self.resolutions
                for layer in lut_specs(r, self.width, self.family)
            ]
        if "random" in self.workload:
            items += [
                Item.whole(c)
                for c in sample_any(
                    self.count, self.seed, self.resolutions, self.width, self.family
                )
            ]
        if self.workload == "configs" and self.configs_file:
            items += [Item.whole(c) for c in load_any_configs(Path(self.configs_file))]
        items += [Item.whole(config_from_json(subnet)) for subnet in self.subnets]
        unique = {(item.kind, item.key, item.r): item for item in items}
        return list(unique.values())

    def to_json(self) -> str:
        data = asdict(self)
        data["targets"] = [t.name for t in self.targets]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CampaignSpec:
        """A stored spec; ValueError naming the field for one that is not a campaign's (the
        values themselves are checked by `validate`)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"campaign spec: not JSON ({show(str(exc))})") from None
        known = {f.name for f in fields(cls)}
        added_later = {
            "subnets": [],
            "max_disturbed": cls.max_disturbed,
            "profile": False,
            "precision": cls.precision,
            "batch": cls.batch,
            "family": cls.family,
        }
        if not isinstance(data, dict) or not known - set(added_later) <= set(data) <= known:
            raise ValueError(
                f"campaign spec: expected an object with the fields "
                f"{', '.join(sorted(known))}, got {show(data)}"
            )
        for name, default in added_later.items():  # specs stored before the field existed
            data.setdefault(name, default)
        for name, kind in (
            ("targets", list),
            ("resolutions", list),
            ("subnets", list),
            ("options", dict),
        ):
            if not isinstance(data[name], kind):
                raise ValueError(f"{name}: expected a {kind.__name__}, got {show(data[name])}")
        if not all(isinstance(t, str) for t in data["targets"]):
            raise ValueError(f"targets: expected names like label:cpu, got {show(data['targets'])}")
        data["targets"] = tuple(Devices.parse(t) for t in data["targets"])
        data["resolutions"] = tuple(data["resolutions"])
        data["subnets"] = tuple(data["subnets"])
        data["options"] = BenchOptions.from_dict(data["options"])
        return cls(**data)


# Jobs queued per transaction when a campaign starts: about 0.1-0.3 s of write lock here.
QUEUE_CHUNK = 5000


def create_campaign(
    store: Store,
    blobs: BlobStore,
    spec: CampaignSpec,
    progress: OnProgress = quiet,
    start: bool = False,
) -> str:
    """Validate, build the artifacts (reusing cached ones; `progress` hears of each) and
    record the campaign in one transaction, so that it exists whole or not at all; with
    `start`, then queue its jobs."""
    items = spec.validate(store) + ([Item.reference()] if spec.reference_every else [])
    built = ArtifactBuilder(store, blobs, spec.target).build_all(items, progress)
    campaign_id = "c" + uuid.uuid4().hex[:8]
    rows = [
        CampaignItem(i, item.kind, item.key, item.r, item.w, digest, inputs)
        for i, (item, (digest, inputs)) in enumerate(zip(items, built, strict=True))
    ]
    jobs = _job_specs(store, spec, rows) if start else None
    store.add_campaign(campaign_id, spec.name, spec.to_json(), rows)
    if jobs is not None:
        _queue(store, campaign_id, spec, rows, jobs)
    return campaign_id


def _refuse_taken_name(store: Store, name: str) -> None:
    store.refuse_taken_campaign_name(name)


def _campaign(store: Store, campaign_id: str) -> Campaign:
    """The campaign with this id or, failing that, this name (refused when two share it, as
    databases from before names were unique may have)."""
    found = store.find_campaigns(campaign_id)
    if not found:
        raise NotFound(f"campaign: no campaign {campaign_id!r}")
    if len(found) > 1:
        raise ValueError(
            f"campaign: {len(found)} campaigns are named {campaign_id!r} "
            f"({', '.join(c.id for c in found)}); give the id"
        )
    return found[0]


def _job_order(n_items: int, repeats: int, rng: random.Random) -> list[tuple[int, int]]:
    """(item index, repeat) pairs, shuffled within each repeat round, so that a model's
    repeats fall in different stretches of the campaign."""
    order = []
    for repeat in range(repeats):
        round_ = list(range(n_items))
        rng.shuffle(round_)
        order += [(item, repeat) for item in round_]
    return order


def start_campaign(store: Store, campaign_id: str) -> int:
    """Queue the campaign's jobs for every target; returns how many it has. A start that was
    interrupted (the campaign is still `starting`) resumes where it stopped."""
    campaign = _campaign(store, campaign_id)
    spec = CampaignSpec.from_json(campaign.spec)
    items = store.campaign_items(campaign.id)
    return _queue(store, campaign.id, spec, items, _job_specs(store, spec, items))


def _job_specs(
    store: Store, spec: CampaignSpec, items: list[CampaignItem]
) -> dict[int, tuple[bytes, str]]:
    """Each item's serialised job spec and model digest, built before any write."""
    specs = {}
    # The drift reference is one fixed fp32 ONNX model: onnxruntime runs it on any target.
    reference_options = (
        spec.options
        if spec.options.runtime == "onnxruntime"
        else replace(spec.options, runtime="onnxruntime", execution_provider="")
    )
    for item in items:
        implements = {
            "reference": {"reference": item.key},
            "lut": {"lut_key": item.key},
            "subnet": {"subnet_json": item.key},
        }[item.kind]
        size = store.blob_size(item.digest)
        if size is None:
            raise NotFound(f"campaign item {item.item}: model blob {item.digest} is missing")
        specs[item.item] = (
            make_spec(
                item.digest,
                size,
                item.inputs,
                reference_options if item.kind == "reference" else spec.options,
                profile=spec.profile and item.kind == "subnet",
                precision="fp32" if item.kind == "reference" else spec.precision,
                **implements,
            ).SerializeToString(),
            item.digest,
        )
    return specs


def _queue(
    store: Store,
    campaign_id: str,
    spec: CampaignSpec,
    items: list[CampaignItem],
    specs: dict[int, tuple[bytes, str]],
) -> int:
    """Queue every target's jobs, QUEUE_CHUNK to a transaction: agents and other commands
    wait for the write lock a fraction of a second, not for the whole campaign. The campaign
    is `starting` meanwhile and `running` once all are queued. Each chunk continues exactly
    where the stored jobs end (the seeded order makes a resumed start queue what an
    uninterrupted one would), so two starts never queue one job twice."""
    store.begin_campaign_start(campaign_id)
    reference = next((i.item for i in items if i.kind == "reference"), None)
    measured = [i.item for i in items if i.kind != "reference"]
    total = 0
    for t, target in enumerate(spec.targets):
        rng = random.Random(f"{campaign_id}/{spec.seed}/{t}")
        order = [
            (measured[i], repeat) for i, repeat in _job_order(len(measured), spec.repeats, rng)
        ]
        if reference is not None:
            order = _interleave(order, reference, spec.reference_every)
        for begin in range(
            store.campaign_jobs_queued(campaign_id, target), len(order), QUEUE_CHUNK
        ):
            chunk = [
                (item, repeat, *specs[item]) for item, repeat in order[begin : begin + QUEUE_CHUNK]
            ]
            if not store.queue_campaign_jobs(
                campaign_id, target, begin, chunk, spec.max_attempts, spec.max_disturbed
            ):
                return store.campaign_jobs_queued(campaign_id)  # another start did the work
        total += len(order)
    store.finish_campaign_start(campaign_id)
    return total


def _interleave(order: list[tuple[int, int]], reference: int, every: int) -> list[tuple[int, int]]:
    """The reference first and then after every `every` jobs (its repeat counts the checks)."""
    out = [(reference, 0)]
    for i, pair in enumerate(order, 1):
        out.append(pair)
        if i % every == 0:
            out.append((reference, i // every))
    return out


KIND_CAMPAIGNS = {"lut": "LUT", "subnet": "subnet"}


def campaigns_by_target(
    store: Store, devices: Devices, kind: str, campaign_ids: Sequence[str] = ()
) -> dict[str, tuple[Target, list[Campaign]]]:
    """The campaigns that queued items of this kind ('lut' or 'subnet') for `devices` (those
    of `campaign_ids`, where given), by their measurement target's name."""
    found: dict[str, tuple[Target, list[Campaign]]] = {}
    for campaign in store.targeted_campaigns(devices, kind):
        if not campaign_ids or campaign.id in campaign_ids:
            try:
                of = CampaignSpec.from_json(campaign.spec).target
            except ValueError as exc:
                raise ValueError(f"campaign {campaign.id}: {exc}") from None
            found.setdefault(of.name, (of, []))[1].append(campaign)
    return found


def target_campaigns(
    store: Store,
    devices: Devices,
    kind: str,
    campaign_ids: Sequence[str] = (),
    target: str | None = None,
) -> tuple[Target, list[Campaign]]:
    """The campaigns of `campaigns_by_target` on one measurement target: `target` (its name)
    or the only one they measured. Results of two targets are never pooled: ValueError
    naming the targets when the choice is missing, and when no such campaign exists."""
    found = campaigns_by_target(store, devices, kind, campaign_ids)
    whose = f"label {devices.label!r}" if devices.label is not None else devices.name
    if not found:
        raise ValueError(
            f"device: no {KIND_CAMPAIGNS[kind]} campaign has targeted {whose}"
            + (f" in campaign {', '.join(campaign_ids)}" if campaign_ids else "")
        )
    return found[pick_target(found, target, f"the {KIND_CAMPAIGNS[kind]} campaigns of {whose}")]


def cancel_campaign(store: Store, campaign_id: str) -> int:
    return store.cancel_campaign(_campaign(store, campaign_id).id)


def campaign_status(store: Store, campaign_id: str) -> dict:
    """Counts per target and state, failures, rate (jobs/s over the last minute) and ETA."""
    return _status(store, _campaign(store, campaign_id))


def _status(store: Store, campaign: Campaign) -> dict:
    now = time.time()
    progress = store.campaign_progress(campaign.id, since=now - 60)
    targets = progress.counts
    total = sum(sum(c.values()) for c in targets.values())
    finished = sum(n for c in targets.values() for s, n in c.items() if s in TERMINAL)
    elapsed = min(60.0, now - (campaign.started_at or now)) or 1.0
    rate = progress.finished_since / elapsed
    return {
        "id": campaign.id,
        "name": campaign.name,
        "state": campaign.state,
        "targets": targets,
        "total": total,
        "finished": finished,
        "failed": sum(c.get("failed", 0) for c in targets.values()),
        "disturbed": sum(c.get("disturbed", 0) for c in targets.values()),
        "rate_per_s": rate,
        "eta_s": (total - finished) / rate if rate else None,
        "errors": progress.errors,
        "started_at": campaign.started_at,
    }


def unserved_targets(store: Store, status: dict) -> list[str]:
    """One line for each target of the campaign with jobs left that no online agent serves."""
    now = time.time()
    agents = store.list_agents()
    lines = []
    for name, counts in sorted(status["targets"].items()):
        if not any(n for state, n in counts.items() if state not in TERMINAL):
            continue
        target = Devices.parse(name)
        serving = [agent for agent in agents if target.includes(agent)]
        if any(agent["online"] for agent in serving):  # judged by heartbeat age
            continue
        what = f"label {target.label}" if target.label is not None else f"id {target.agent}"
        seen = (
            f"last seen {ago(now - max(a['last_seen'] for a in serving))}"
            if serving
            else "none is registered"
        )
        lines.append(f"no online agent has {what} ({seen})")
    return lines


def list_campaigns(store: Store) -> list[dict]:
    return [_status(store, campaign) for campaign in store.list_campaigns()]


MEASURED = ("done", "failed", "disturbed")  # jobs that ran to an end (not cancelled)


def render_progress(status: dict, width: int = 30, per_target: bool = True) -> str:
    """One line: bar, counts, rate, ETA, state and (`per_target`) per-target counts and
    failures. The bar fills with the jobs that ran to an end, so a cancelled campaign never
    looks complete, and an empty one says so instead of showing a bar."""
    targets = status["targets"] if per_target else {}
    every = status["targets"].values()
    total, measured = status["total"], sum(c.get(s, 0) for c in every for s in MEASURED)
    cancelled = sum(c.get("cancelled", 0) for c in every)
    if total:
        filled = width * measured // total
        shown = f"[{'#' * filled}{'.' * (width - filled)}] {measured}/{total}"
    else:
        shown = "no jobs"
    eta, running = status["eta_s"], status["state"] not in ("done", "cancelled")
    parts = [
        f"{status['id']} {shown}" + (f", {cancelled} cancelled" if cancelled else ""),
        f"{status['rate_per_s']:.1f} jobs/s",
        f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}" if eta and running else "ETA -",
        status["state"],
    ]
    for target, counts in sorted(targets.items()):
        ended = "".join(
            f", {counts[state]} {state}"
            for state in ("failed", "disturbed", "cancelled")
            if counts.get(state)
        )
        ran = sum(counts.get(s, 0) for s in MEASURED)
        parts.append(f"{target} {ran}/{sum(counts.values())}{ended}")
    return " | ".join(parts)

"""What the state's methods take and return: typed, immutable rows, never a database
driver's row objects, plus the one list of a stored result's fields."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# What a device label (and an agent id) may be: the labels agents register and tokens allow.
LABEL = re.compile(r"[A-Za-z0-9._-]{1,64}")

# A job in one of these states is finished: nothing will lease it again.
TERMINAL = ("done", "failed", "disturbed", "cancelled")

# Report fields stored as they came, under the same names on the wire (proto Result), in
# the result dict `Store.report` takes, and in the results table.
REPORTED_AS_IS = (
    "session_create_ns",
    "first_run_ns",
    "warmup_runs",
    "warmup_ns",
    "stop_reason",
    "peak_rss_bytes",
    "lease_to_report_ns",
)
# A stored result's fields as a campaign's results list them (`Store.campaign_results`),
# in the order exports write them.
RESULT_FIELDS = (
    "status",
    "accepted",
    "late",
    "message",
    "n",
    "median_ms",
    "mean_ms",
    "std_ms",
    "p10_ms",
    "p90_ms",
    "p99_ms",
    "cv",
    "stop_reason",
    "session_create_ns",
    "first_run_ns",
    "warmup_runs",
    "warmup_ns",
    "peak_rss_bytes",
    "drift",
    "drift_check",
    "evidence",
    "conditions",
    "profile",
    "received_at",
    "runtime_versions",
    "telemetry_before",
    "telemetry_after",
)
# Of those, the ones that hold an object (stored as JSON). drift_check: the reference model's
# baseline and current medians behind `drift`, to audit it.
JSON_RESULT_FIELDS = (
    "drift_check",
    "evidence",
    "conditions",
    "profile",
    "runtime_versions",
    "telemetry_before",
    "telemetry_after",
)
# Where a campaign's result belongs, listed before its RESULT_FIELDS.
CAMPAIGN_RESULT_KEYS = ("campaign", "target", "agent_id", "kind", "key", "r", "w", "repeat")


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    agent_id: str | None
    revoked: bool
    labels: tuple[str, ...] | None  # the labels it may serve; None: any


@dataclass(frozen=True)
class LeasedJob:
    job_id: str
    lease_id: str
    expires_at: float
    attempt: int
    spec: bytes


@dataclass(frozen=True)
class ReportOutcome:
    accepted: bool
    duplicate: bool
    late: bool


@dataclass(frozen=True)
class Devices:
    """A device class (label) or one agent; each target gets its own copy of every job.
    `name` is how the state stores it (`label:cpu`, `agent:a1`)."""

    label: str | None = None
    agent: str | None = None

    @property
    def name(self) -> str:
        return f"label:{self.label}" if self.label is not None else f"agent:{self.agent}"

    def includes(self, agent: dict) -> bool:
        """Whether `agent` (a `Store.list_agents` row) is one of these devices."""
        return (
            self.label in agent["labels"] if self.label is not None else agent["id"] == self.agent
        )

    @classmethod
    def parse(cls, name: str) -> Devices:
        kind, _, value = name.partition(":")
        return cls(label=value) if kind == "label" else cls(agent=value)


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    spec: str  # CampaignSpec as JSON
    state: str  # created, starting, running, done or cancelled
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class CampaignItem:
    """One model a campaign measures, as its jobs refer to it (`item` is its index)."""

    item: int
    kind: str  # lut, subnet or reference
    key: str
    r: int | None
    w: float | None
    digest: str
    inputs: list  # the model's input names and shapes


@dataclass(frozen=True)
class CampaignProgress:
    """A campaign's jobs in one snapshot: counts by target and state, how many finished
    since a moment, and the first few failures' reasons."""

    counts: dict[str, dict[str, int]]
    finished_since: int
    errors: list[str]


@dataclass(frozen=True)
class Artifact:
    """A cached model of a campaign item: its blob and input shapes."""

    digest: str
    inputs: list


@dataclass(frozen=True)
class ItemResult:
    """An accepted OK result of a campaign item (or, asked for, the disturbed result of a
    job never measured cleanly), with the item it measured."""

    r: int | None
    key: str
    median_ms: float
    samples_ns: np.ndarray  # int64
    drift: float | None
    agent_id: str
    runtime_versions: str  # JSON with sorted keys: equal versions compare equal
    campaign_id: str
    disturbed: bool = False
    peak_rss_bytes: int = 0  # the agent's peak memory while measuring (0: not recorded)


@dataclass(frozen=True)
class ImportedLine:
    """One end-to-end measurement made elsewhere (`measurements import`): the file's line,
    the subnet's canonical JSON, its latency and the line's other keys (JSON)."""

    line: int
    key: str
    latency_ms: float
    metadata: str


@dataclass(frozen=True)
class Imported:
    """An imported measurement of a device, with the target it was measured on (the
    target's dict as JSON) and the import it came in."""

    import_id: str
    target: str
    key: str
    latency_ms: float


@dataclass(frozen=True)
class ItemJobs:
    """The jobs of one campaign item for one target: how many are in each state, and how
    many disturbed results (re-measured, never accepted) they had."""

    states: dict[str, int]
    disturbed: int


@dataclass(frozen=True)
class ResultTiming:
    """Where an accepted OK result's time went: from its lease being issued to its report
    being stored, against what the agent reported spending on the model."""

    issued_at: float  # the lease's
    received_at: float
    session_create_ns: int | None
    warmup_ns: int | None
    samples_ns: np.ndarray  # int64, the timed runs


@dataclass(frozen=True)
class PeerRatio:
    """How an agent's measurements of one label compare with its peers': `ratio`, the median
    over the `shared` models it measured with unquarantined agents of (its median_ms / the
    median of theirs), None when it shares none; `peers`, the same median against each of
    those agents alone, by agent id."""

    agent_id: str
    ratio: float | None
    shared: int
    peers: dict[str, float]
    quarantined: bool


@dataclass(frozen=True)
class CurrentLease:
    """A job an agent is measuring now (an active lease), as `ofa-coord status` shows it:
    its spec tells what it measures; a campaign's job names its campaign."""

    agent_id: str
    job_id: str
    issued_at: float
    spec: bytes  # serialised BenchSpec
    campaign_id: str | None
    campaign_name: str | None


@dataclass(frozen=True)
class LabelQueue:
    """The jobs meant for one device label: queued, leased, and finished since a moment."""

    label: str
    queued: int
    leased: int
    finished_since: int


@dataclass(frozen=True)
class AgentError:
    """An agent's most recent failed or disturbed result: the failure's message, or the
    reasons its disturbance check gave."""

    agent_id: str
    status: str  # failed or disturbed
    message: str
    reasons: tuple[str, ...]
    received_at: float

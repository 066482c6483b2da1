"""The fleet's state: tokens, agents, jobs, leases, results, blobs and campaigns.

This package is the only place that speaks SQL; everything else uses the names exported
here. `Store` is the state's interface (its contract is in `coordinator/state/store.py`'s
docstring, and the contract tests in `tests/state/`), on an SQLite file or a PostgreSQL
database (`coordinator/state/backend.py`)."""

from coordinator.state.backend import is_postgres_url, redacted
from coordinator.state.blobs import DIGEST, MAX_MODEL_BYTES, BlobStore
from coordinator.state.errors import (
    STORAGE_ERRORS,
    Forbidden,
    NotAFleetDatabase,
    NotFound,
    UnknownAgent,
    UnknownLease,
    is_transient,
    storage_error_name,
    storage_problem,
)
from coordinator.state.rows import (
    CAMPAIGN_RESULT_KEYS,
    JSON_RESULT_FIELDS,
    LABEL,
    REPORTED_AS_IS,
    RESULT_FIELDS,
    TERMINAL,
    AgentError,
    Artifact,
    Campaign,
    CampaignItem,
    CampaignProgress,
    CurrentLease,
    Devices,
    Imported,
    ImportedLine,
    ItemJobs,
    ItemResult,
    LabelQueue,
    LeasedJob,
    PeerRatio,
    ReportOutcome,
    ResultTiming,
    Token,
)
from coordinator.state.schema import SCHEMA_VERSION
from coordinator.state.store import (
    DEFAULT_OFFLINE_AFTER_S,
    FILES_BESIDE_SQLITE,
    Store,
    hash_token,
)

__all__ = [
    "Store",
    "BlobStore",
    "Token",
    "LeasedJob",
    "ReportOutcome",
    "Devices",
    "Imported",
    "ImportedLine",
    "Campaign",
    "CampaignItem",
    "CampaignProgress",
    "Artifact",
    "ItemJobs",
    "ItemResult",
    "ResultTiming",
    "PeerRatio",
    "CurrentLease",
    "LabelQueue",
    "AgentError",
    "NotFound",
    "UnknownAgent",
    "UnknownLease",
    "Forbidden",
    "NotAFleetDatabase",
    "STORAGE_ERRORS",
    "is_transient",
    "storage_error_name",
    "storage_problem",
    "SCHEMA_VERSION",
    "DEFAULT_OFFLINE_AFTER_S",
    "TERMINAL",
    "REPORTED_AS_IS",
    "RESULT_FIELDS",
    "JSON_RESULT_FIELDS",
    "CAMPAIGN_RESULT_KEYS",
    "hash_token",
    "DIGEST",
    "LABEL",
    "MAX_MODEL_BYTES",
    "is_postgres_url",
    "redacted",
    "FILES_BESIDE_SQLITE",
]

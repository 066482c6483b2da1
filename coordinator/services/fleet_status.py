"""The fleet at a glance (`ofa-coord status`): every agent with the job it is measuring,
each device label's queue and throughput, and the campaigns still running. It only reads
the state and is given `now`, so that a watch loop and tests call it alike."""

from __future__ import annotations

from agent.describe import describe_spec
from coordinator.services.campaigns import campaign_status
from coordinator.state import AgentError, CurrentLease, Store
from proto.ofafleet.v1 import fleet_pb2 as pb

__all__ = ["fleet_status", "agent_status", "RATE_WINDOW_S", "ERROR_CHARS"]

RATE_WINDOW_S = 60.0  # a label's rate: the jobs measured to an end in this many seconds
ERROR_CHARS = 80  # an agent's last error is cut to this length
_RUNNING = ("starting", "running")


def fleet_status(store: Store, now: float) -> dict:
    """{agents, labels, campaigns, at}: see `_agent`, `_labels` and `campaign_status` for
    their fields. Online is judged from each heartbeat's age, as `Store.list_agents` does."""
    measuring: dict[str, CurrentLease] = {}
    for lease in store.current_leases():  # oldest first: an agent's first is its current job
        measuring.setdefault(lease.agent_id, lease)
    errors = {error.agent_id: error for error in store.last_errors()}
    agents = [
        _agent(agent, measuring.get(agent["id"]), errors.get(agent["id"]), now)
        for agent in store.list_agents()
    ]
    return {
        "agents": agents,
        "labels": _labels(store, agents, now),
        "campaigns": [
            campaign_status(store, campaign.id)
            for campaign in store.list_campaigns()
            if campaign.state in _RUNNING
        ],
        "at": now,
    }


def agent_status(agent: dict) -> str:
    """quarantined, online or offline (a quarantined agent may be either)."""
    if agent["quarantine"] is not None:
        return "quarantined"
    return "online" if agent["online"] else "offline"


def _agent(agent: dict, lease: CurrentLease | None, error: AgentError | None, now: float) -> dict:
    return {
        "id": agent["id"],
        "status": agent_status(agent),
        "online": bool(agent["online"]),
        "quarantine": agent["quarantine"],  # None, or since when, why and at what ratio
        "labels": agent["labels"],
        "threads": agent["threads"],
        "capabilities": _capabilities(agent["device"]),
        "job": None if lease is None else _job(lease, now),
        "jobs_done": agent["jobs_done"],
        "last_error": None if error is None else _error(error),
    }


def _capabilities(device: dict) -> list[str]:
    """What the device runs models on, as its device info reports: onnxruntime's execution
    providers (CPU, CUDA, ...) and torch, with CUDA when it sees a GPU."""
    runtimes = [
        provider.removesuffix("ExecutionProvider")
        for provider in device.get("onnxruntime_providers", [])
    ]
    if "torch_version" in device:
        runtimes.append("torch+cuda" if device.get("cuda_device") else "torch")
    return runtimes


def _job(lease: CurrentLease, now: float) -> dict:
    return {
        "job_id": lease.job_id,
        "campaign_id": lease.campaign_id,
        "campaign": lease.campaign_name,
        "what": describe_spec(pb.BenchSpec.FromString(lease.spec)),
        "elapsed_s": max(0.0, now - lease.issued_at),
    }


def _error(error: AgentError) -> str:
    """One line: the failure's message, or the disturbance check's reasons."""
    detail = error.message if error.status == "failed" else "; ".join(error.reasons)
    text = " ".join(f"{error.status}: {detail}".split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _labels(store: Store, agents: list[dict], now: float) -> list[dict]:
    """Each label that agents serve or jobs wait for: its jobs queued and leased, the rate
    they were measured at over the last RATE_WINDOW_S, the time left at that rate (None
    while nothing was measured), and how many online agents serve it."""
    queues = {queue.label: queue for queue in store.label_queue(since=now - RATE_WINDOW_S)}
    served = {label for agent in agents for label in agent["labels"]}
    out = []
    for label in sorted(served | set(queues)):
        queue = queues.get(label)
        queued, leased, finished = (
            (queue.queued, queue.leased, queue.finished_since) if queue else (0, 0, 0)
        )
        rate = finished / RATE_WINDOW_S
        out.append(
            {
                "label": label,
                "queued": queued,
                "leased": leased,
                "rate_per_s": rate,
                "eta_s": (queued + leased) / rate if rate else None,
                "agents_online": sum(
                    1 for agent in agents if agent["online"] and label in agent["labels"]
                ),
            }
        )
    return out

"""Prometheus metrics of a running coordinator (`serve --http`): what the store holds, read
at each scrape, and how long each RPC took, recorded as it is answered.

The counts come from the database, not from counters kept in memory, so they are right
after a restart and agree with `ofa-coord status` and `results export`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator.services.fleet_status import RATE_WINDOW_S
from coordinator.state import Store

__all__ = ["FleetMetrics", "TimingInterceptor", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB_STATES = ("queued", "leased", "done", "failed", "disturbed", "cancelled")
# RPCs take milliseconds, a long-poll LeaseJobs up to its wait (20 s by default).
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class FleetMetrics:
    """A registry with the store's gauges and the RPC latency histogram; `exposition()` is
    the /metrics page. `store` is the HTTP side's own connection (the page reads it too),
    used under `lock`, as requests come on several threads."""

    def __init__(self, store: Store) -> None:
        self.store, self.lock = store, threading.Lock()
        self.registry = CollectorRegistry()
        self.rpc_seconds = Histogram(
            "ofa_rpc_seconds",
            "Time to answer a fleet RPC, by method and gRPC status code.",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(self))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, metrics: FleetMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        store = self.metrics.store
        with self.metrics.lock:
            jobs = store.job_counts()
            results = store.agent_result_counts()
            agents = store.list_agents()
            drift = store.last_drifts()
            leases = store.current_leases()
            queues = store.label_queue(since=time.time() - RATE_WINDOW_S)
        by_state = GaugeMetricFamily("ofa_jobs", "Jobs by state.", labels=["state"])
        for state in JOB_STATES:
            by_state.add_metric([state], jobs.get(state, 0))
        yield by_state
        yield GaugeMetricFamily("ofa_leases_active", "Leases being measured now.", len(leases))
        by_status = GaugeMetricFamily(
            "ofa_results", "Results stored, by agent and status.", labels=["agent", "status"]
        )
        for (agent_id, status), count in sorted(results.items()):
            by_status.add_metric([agent_id, status], count)
        yield by_status
        online_now = sum(agent["online"] for agent in agents)
        yield GaugeMetricFamily("ofa_agents_online", "Agents with a recent heartbeat.", online_now)
        done = GaugeMetricFamily(
            "ofa_agent_jobs_done", "Jobs each agent measured to an end.", labels=["agent"]
        )
        online = GaugeMetricFamily("ofa_agent_online", "1 while online.", labels=["agent"])
        for agent in agents:
            done.add_metric([agent["id"]], agent["jobs_done"])
            online.add_metric([agent["id"]], agent["online"])
        yield done
        yield online
        drifts = GaugeMetricFamily(
            "ofa_agent_reference_drift",
            "The agent's last reference check: its median over its baseline, minus 1.",
            labels=["agent"],
        )
        for agent_id, value in sorted(drift.items()):
            drifts.add_metric([agent_id], value)
        yield drifts
        queued = GaugeMetricFamily("ofa_label_jobs_queued", "Jobs waiting.", labels=["label"])
        rate = GaugeMetricFamily(
            "ofa_label_jobs_per_second",
            f"Jobs measured to an end over the last {RATE_WINDOW_S:.0f} s.",
            labels=["label"],
        )
        for queue in queues:
            queued.add_metric([queue.label], queue.queued)
            rate.add_metric([queue.label], queue.finished_since / RATE_WINDOW_S)
        yield queued
        yield rate


class TimingInterceptor(grpc.aio.ServerInterceptor):
    """Records each unary RPC's time from handler start to answer in `histogram`."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        behaviour, histogram = handler.unary_unary, self.histogram

        async def timed(request, context):
            started = time.perf_counter()
            try:
                return await behaviour(request, context)
            finally:
                code = context.code() or grpc.StatusCode.OK
                name = code.name if isinstance(code, grpc.StatusCode) else str(code)
                histogram.labels(method, name).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

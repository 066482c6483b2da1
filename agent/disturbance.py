"""Evidence, collected while a measurement runs, that something else competed with it.

A number measured while other work held the CPU is not the device's latency. Readings before
and after a job miss a load that came and went; the shape of the samples misses a load that
lasted the whole job. So the counters are read between blocks of timed runs, and the judgment
rests on the most direct evidence the OS gives:

- **CPU wait**: time the agent's own threads were runnable but waiting for a CPU (Linux
  schedstat, per thread), as a share of the wall time per measuring thread. Zero on an idle
  device whatever the thread count; any competitor for the cores the measurement needs shows.
  Where schedstat is missing (some phones), the cores other processes used meanwhile, beyond
  those the measurement leaves free, stand in for it.
- **steal**: a VM's host took the CPU away.
- **frequency** falling during the runs (throttling), and temperature, where exposed.

The shape of the samples is recorded with them. Their spread tells a reader how a disturbed
number was disturbed, but a quiet device has spread too, so it does not judge. Their trend
does: the job's own runs are its in-job reference (of its size, with its threads), and a
speed that changes by more than a quarter between the first and the last third of the
blocks means a load began or ended during it, whatever the counters saw.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from agent.device import max_temperature_c, probe

__all__ = ["DisturbanceLimits", "Evidence", "Monitor", "cpu_wait_ns"]

_TASKS = Path("/proc/self/task")
_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")
TREND_MIN_BLOCKS = 9  # three blocks per third at least


@dataclass(frozen=True)
class DisturbanceLimits:
    """When a measurement counts as disturbed. Measured on a 2-core VM with busy-loop hogs:
    CPU wait 0.000-0.002 quiet, 0.4-1.5 under contention; a 1-thread job beside one hog on the
    other core waited 0.001 and kept its median."""

    cpu_wait: float = 0.05  # runnable-but-waiting time / (wall x measuring threads)
    steal: float = 0.05  # stolen CPU time / (wall x cores)
    others_cpu: float = 0.25  # cores used by others beyond the free ones (no schedstat)
    frequency_drop: float = 0.10  # 1 - lowest / highest frequency seen during the runs
    # The job's own runs as its in-job reference: the median of the last third of the blocks
    # over the first third, minus 1, beyond this either way (a load that ends mid-job makes
    # it faster). What the counters cannot see (heat, memory bandwidth other cores take)
    # still shows here. Quiet: within +-4% with 1 thread, +-13% with 2 threads on 2 shared
    # cores; busy loops started mid-job: +144% to +200% for a 2.7 ms subnet, but +3% to +45%
    # for a 0.3 ms model, whose runs mostly fit between the scheduler's switches (CPU wait
    # is the signal there). Judged only over TREND_MIN_BLOCKS blocks or more: with fewer,
    # one block is compared with one block, and 2-thread jobs of 5-9 blocks went past the
    # limit quiet.
    trend: float = 0.25

    def __post_init__(self) -> None:
        for name in ("cpu_wait", "steal", "others_cpu", "frequency_drop", "trend"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ValueError(f"{name}: expected a finite number > 0, got {value}")


@dataclass
class Evidence:
    """What the counters said over the timed runs; `reasons` is empty when it was clean.
    A value the device does not expose is None."""

    cpu_wait: float | None = None
    cpu_wait_peak: float | None = None  # the worst window of >= `Monitor.window_s`
    others_cpu: float | None = None
    steal: float | None = None
    load_1m: float | None = None
    freq_min_mhz: float | None = None
    freq_max_mhz: float | None = None
    temperature_max_c: float | None = None
    block_spread: float = 0.0  # (max - min) / median of the block medians
    trend: float = 0.0  # median of the last third of the blocks / the first third - 1
    reasons: list[str] = field(default_factory=list)

    @property
    def disturbed(self) -> bool:
        return bool(self.reasons)


def cpu_wait_ns() -> int | None:
    """Nanoseconds this process's threads have spent runnable but waiting for a CPU (the
    second field of each thread's schedstat), or None where the kernel does not say."""
    total, seen = 0, False
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return None
    for tid in tids:
        try:
            total += int((_TASKS / tid / "schedstat").read_text().split()[1])
            seen = True
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total if seen else None


def _busy_s(times) -> float:
    return sum(getattr(times, name, 0.0) for name in _BUSY_FIELDS)


@dataclass
class _Counters:
    wall: float
    wait_ns: int | None
    system: object | None  # psutil.cpu_times()
    own_cpu_s: float | None

    @classmethod
    def read(cls) -> _Counters:
        own = probe(psutil.Process().cpu_times)
        return cls(
            time.perf_counter(),
            cpu_wait_ns(),
            probe(psutil.cpu_times),
            own.user + own.system if own else None,
        )


class Monitor:
    """Reads the counters at `start`, at `tick` (between blocks of runs; at most every
    `window_s`, so a fast model's blocks pay no syscalls) and at `finish`, which judges."""

    window_s = 0.1  # /proc/stat counts in 10 ms ticks: shorter windows read as noise
    sensor_every_s = 0.5  # frequency and temperature are slower to read

    def __init__(self, threads: int, limits: DisturbanceLimits = DisturbanceLimits()) -> None:
        self.threads = threads
        self.limits = limits
        self.cores = psutil.cpu_count() or 1
        self._first: _Counters | None = None
        self._last: _Counters | None = None
        self._peak_wait: float | None = None
        self._sensor_at = -math.inf
        self._freqs: list[float] = []
        self._temps: list[float] = []
        self._blocks = 0

    def start(self) -> None:
        self._first = self._last = _Counters.read()
        self._read_sensors(force=True)

    def tick(self) -> None:
        assert self._last is not None, "start() first"
        if time.perf_counter() - self._last.wall < self.window_s:
            return
        now = _Counters.read()
        self._note_window(self._last, now)
        self._last = now
        self._read_sensors()

    def finish(self, block_medians: Sequence[float] | np.ndarray) -> Evidence:
        assert self._first is not None and self._last is not None, "start() first"
        end = _Counters.read()
        if end.wall - self._last.wall >= self.window_s:
            self._note_window(self._last, end)
        self._read_sensors(force=True)
        spread, trend = _shape(block_medians)
        self._blocks = len(block_medians)
        evidence = Evidence(
            cpu_wait=self._wait_share(self._first, end),
            cpu_wait_peak=self._peak_wait,
            others_cpu=self._others_cpu(self._first, end),
            steal=self._steal(self._first, end),
            load_1m=probe(lambda: os.getloadavg()[0]),
            freq_min_mhz=min(self._freqs) if self._freqs else None,
            freq_max_mhz=max(self._freqs) if self._freqs else None,
            temperature_max_c=max(self._temps) if self._temps else None,
            block_spread=spread,
            trend=trend,
        )
        evidence.reasons = self._judge(evidence)
        return evidence

    def _judge(self, e: Evidence) -> list[str]:
        limits, reasons = self.limits, []
        if e.cpu_wait is not None:
            if e.cpu_wait > limits.cpu_wait:
                reasons.append(
                    f"cpu_wait {e.cpu_wait:.3f} > {limits.cpu_wait:g}: the measuring threads "
                    "waited for a CPU"
                )
        elif e.others_cpu is not None:
            free = max(0, self.cores - self.threads)
            if e.others_cpu > free + limits.others_cpu:
                reasons.append(
                    f"others_cpu {e.others_cpu:.2f} cores > {free} free + "
                    f"{limits.others_cpu:g}: other processes competed for the cores"
                )
        if e.steal is not None and e.steal > limits.steal:
            reasons.append(f"steal {e.steal:.3f} > {limits.steal:g}: the VM's host took the CPU")
        if e.freq_min_mhz and e.freq_max_mhz:
            drop = 1 - e.freq_min_mhz / e.freq_max_mhz
            if drop > limits.frequency_drop:
                reasons.append(
                    f"frequency fell {drop:.0%} ({e.freq_max_mhz:.0f} -> "
                    f"{e.freq_min_mhz:.0f} MHz) during the runs"
                )
        judged = self._blocks >= TREND_MIN_BLOCKS
        if judged and not 1 / (1 + limits.trend) - 1 <= e.trend <= limits.trend:
            reasons.append(
                f"trend {e.trend:+.0%}: the job's own runs changed speed by more than "
                f"{limits.trend:.0%} between its first and last third (a load began or ended)"
            )
        return reasons

    def _note_window(self, a: _Counters, b: _Counters) -> None:
        share = self._wait_share(a, b)
        if share is not None and (self._peak_wait is None or share > self._peak_wait):
            self._peak_wait = share

    def _wait_share(self, a: _Counters, b: _Counters) -> float | None:
        if a.wait_ns is None or b.wait_ns is None or b.wall <= a.wall:
            return None
        return max(0.0, (b.wait_ns - a.wait_ns) / 1e9 / (b.wall - a.wall) / self.threads)

    def _others_cpu(self, a: _Counters, b: _Counters) -> float | None:
        if None in (a.system, b.system, a.own_cpu_s, b.own_cpu_s) or b.wall <= a.wall:
            return None
        busy = _busy_s(b.system) - _busy_s(a.system)
        own = b.own_cpu_s - a.own_cpu_s  # type: ignore[operator]
        return max(0.0, (busy - own) / (b.wall - a.wall))

    def _steal(self, a: _Counters, b: _Counters) -> float | None:
        if a.system is None or b.system is None or not hasattr(a.system, "steal"):
            return None
        stolen = b.system.steal - a.system.steal  # type: ignore[attr-defined]
        return max(0.0, stolen / (b.wall - a.wall) / self.cores) if b.wall > a.wall else None

    def _read_sensors(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._sensor_at < self.sensor_every_s:
            return
        self._sensor_at = now
        freq = probe(lambda: psutil.cpu_freq().current)
        if freq:
            self._freqs.append(float(freq))
        temperature = probe(max_temperature_c)
        if temperature is not None:
            self._temps.append(float(temperature))


def _shape(block_medians: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Spread and trend of the block medians (0, 0 for fewer than 3 blocks)."""
    medians = np.asarray(block_medians, dtype=np.float64)
    if medians.size < 3 or not np.median(medians) > 0:
        return 0.0, 0.0
    third = medians.size // 3
    first, last = np.median(medians[:third]), np.median(medians[-third:])
    spread = float((medians.max() - medians.min()) / np.median(medians))
    return spread, float(last / first - 1) if first > 0 else 0.0

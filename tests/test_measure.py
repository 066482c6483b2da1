"""The agent's measurement engine on a real exported model under onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from agent import measure as engine
from agent.measure import BenchSettings, measure
from agent.stats import median_ci, summarize
from ofa.config import SubnetConfig
from ofa.nn.export import export_lut_entry
from ofa.plan import layer_plan


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return export_lut_entry(layer_plan(SubnetConfig.largest(r=64))[4]).onnx


def test_stops_on_precision_with_every_raw_sample_kept(model_bytes):
    settings = BenchSettings(
        warmup_runs=3,
        warmup_min_s=0.0,
        min_runs=20,
        min_time_s=0.0,
        block_runs=10,
        target_precision=0.5,
    )
    result = measure(model_bytes, settings)
    assert result.stop_reason == "precision"
    assert len(result.samples_ns) >= 20 and len(result.samples_ns) % 10 == 0
    assert all(s > 0 for s in result.samples_ns)
    assert result.warmup_runs >= 3 and result.session_create_ns > 0 and result.first_run_ns > 0
    stats = result.stats()
    assert stats["n"] == len(result.samples_ns)
    assert stats["ci_low_ms"] <= stats["median_ms"] <= stats["ci_high_ms"]


def test_stops_at_the_time_cap_and_says_so(model_bytes):
    """No wall-clock limit (the machine may be loaded): the cap is checked after each block,
    so every block but the last started before it, and their runs, timed within the timed
    phase, add up to less than the cap; the last block ends the measurement."""
    settings = BenchSettings(
        warmup_runs=1,
        warmup_min_s=0.0,
        min_runs=5,
        min_time_s=0.0,
        max_time_s=0.3,
        target_precision=1e-9,
        block_runs=10,
    )
    result = measure(model_bytes, settings)
    assert result.stop_reason == "time_cap"
    assert len(result.samples_ns) % 10 == 0
    assert sum(result.samples_ns[:-10]) < 0.3e9


def test_stops_at_the_sample_bound_the_coordinator_accepts(model_bytes, monkeypatch):
    """A model far faster than its time cap stops at MAX_SAMPLES (made small here), on a
    whole block, saying time_cap: the coordinator refuses a report with more."""
    monkeypatch.setattr(engine, "MAX_SAMPLES", 95)
    settings = BenchSettings(
        warmup_runs=1,
        warmup_min_s=0.0,
        min_runs=5,
        min_time_s=0.0,
        max_time_s=600,
        target_precision=1e-9,
        block_runs=10,
    )
    result = measure(model_bytes, settings)
    assert result.stop_reason == "time_cap"
    assert len(result.samples_ns) == 90


def test_warmup_runs_by_time_as_well_as_by_count(model_bytes):
    """Warm-up goes in whole blocks, two at least (to see the timings stable); asking for
    0.3 s of it keeps it going that long, by the engine's own clock."""
    quick = {"min_runs": 5, "min_time_s": 0.0, "target_precision": 0.9, "block_runs": 5}
    by_count = measure(model_bytes, BenchSettings(warmup_runs=1, warmup_min_s=0.0, **quick))
    by_time = measure(model_bytes, BenchSettings(warmup_runs=1, warmup_min_s=0.3, **quick))
    assert by_count.warmup_runs >= 10 and by_count.warmup_runs % 5 == 0
    assert by_time.warmup_ns >= 0.3e9


def test_warmup_goes_on_while_the_model_keeps_getting_faster():
    """Runs that start at 20 ms and get 3% faster each until 5 ms (a clock ramping up): the
    warm-up ends with the first block whose median is within 10% of the block before, long
    after its 10-run minimum; a model steady from the start stops after two blocks."""
    durations = np.maximum(20e6 * 0.97 ** np.arange(1000), 5e6).astype(np.int64)
    blocks = np.median(durations.reshape(-1, 10), axis=1)
    first_stable = 1 + int(np.argmax(np.abs(blocks[1:] / blocks[:-1] - 1) <= 0.10))
    assert first_stable > 2  # the ramp is what keeps it going
    now, calls = [0], [0]

    def run():
        now[0] += int(durations[calls[0]])
        calls[0] += 1

    settings = BenchSettings(warmup_runs=10, warmup_min_s=0.0, block_runs=10)
    assert engine._warm_up(run, settings, lambda: now[0]) == 10 * (first_stable + 1)
    durations[:] = 5_000_000
    calls[0] = 0
    assert engine._warm_up(run, settings, lambda: now[0]) == 20


def test_median_ci_is_distribution_free_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.lognormal(size=50), rng.lognormal(size=5000)
    lo_s, hi_s = median_ci(small)
    lo_l, hi_l = median_ci(large)
    assert lo_s <= np.median(small) <= hi_s and lo_l <= np.median(large) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4
    stats = summarize([1_000_000, 2_000_000, 3_000_000])
    assert stats["median_ms"] == 2.0 and stats["n"] == 3
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threads", 0, "threads: expected an integer >= 1"),
        ("min_runs", 0, "min_runs: expected an integer >= 1"),
        ("max_time_s", 0, "max_time_s: expected a finite number > 0"),
        ("target_precision", 1.5, "target_precision: expected a fraction in (0, 1)"),
        ("warmup_min_s", -1, "warmup_min_s: expected a finite number >= 0"),
    ],
)
def test_bad_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError) as info:
        BenchSettings(**{field: value})
    assert message in str(info.value)

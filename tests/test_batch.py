"""ConfigBatch, the array route into the predictors and the search, validates like
SubnetConfig: bad entries are refused naming the field, row, column and allowed values."""

from __future__ import annotations

import numpy as np
import pytest

from ofa.batch import ConfigBatch
from ofa.config import sample_configs
from ofa.search import SearchSettings, evolutionary_search

CONFIGS = sample_configs(6, seed=3, resolutions=(160, 224), w=1.2)


def arrays(**changes):
    batch = ConfigBatch.from_configs(CONFIGS)
    fields = {
        "ks": batch.ks.copy(),
        "e": batch.e.copy(),
        "d": batch.d.copy(),
        "r": batch.r.copy(),
        "w": batch.w,
    }
    for name, change in changes.items():
        fields[name] = change(fields[name]) if callable(change) else change
    return fields


def put(index, value, dtype=None):
    def change(array):
        array = array.astype(dtype) if dtype else array
        array[index] = value
        return array

    return change


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"d": put((3, 2), 5)}, "d[3][2]: expected one of 2, 3, 4, got 5"),
        ({"d": put((0, 0), 1)}, "d[0][0]: expected one of 2, 3, 4, got 1"),
        (
            {"ks": put((1, 7), 9)},
            "ks[1][7]: expected one of 0, 1, 2, got 9 (indices into (3, 5, 7))",
        ),
        (
            {"e": put((5, 19), -1)},
            "e[5][19]: expected one of 0, 1, 2, got -1 (indices into (3, 4, 6))",
        ),
        (
            {"r": put(2, np.nan, np.float64)},
            "r[2]: expected an integer in 32..1024, got nan (float)",
        ),
        (
            {"r": put(4, np.inf, np.float64)},
            "r[4]: expected an integer in 32..1024, got inf (float)",
        ),
        (
            {"r": put(1, 160.5, np.float64)},
            "r[1]: expected an integer in 32..1024, got 160.5 (float)",
        ),
        ({"r": put(0, 2048)}, "r[0]: expected an integer in 32..1024, got 2048"),
        ({"r": [224, 160, 192, 224, 160, None]}, "r[5]: expected an integer in 32..1024, got None"),
        ({"d": lambda d: d.astype(bool)}, "d[0][0]: expected one of 2, 3, 4, got True (bool)"),
        ({"r": np.array(["224"] * 6)}, "r[0]: expected an integer in 32..1024, got '224' (str)"),
        (
            {"ks": lambda ks: ks[:, :19]},
            "ks: expected an array of shape (n, 20), got shape (6, 19)",
        ),
        ({"d": lambda d: d[:5]}, "d: expected 6 rows (one per config, as in ks), got 5"),
        ({"r": 224}, "r: expected an array of shape (n,), got shape ()"),
        ({"e": [[0] * 20] * 5 + [[0] * 19]}, "e: expected a rectangular array"),
        ({"w": 1.5}, "w: expected one of (1.0, 1.2) for MobileNetV3, got 1.5"),
        ({"w": float("nan")}, "w: expected one of (1.0, 1.2) for MobileNetV3, got nan"),
    ],
)
def test_bad_arrays_are_refused_naming_field_entry_and_choices(changes, message):
    with pytest.raises(ValueError) as info:
        ConfigBatch(**arrays(**changes))
    assert str(info.value).startswith(message)


def test_a_valid_batch_is_stored_in_canonical_dtypes_and_reads_back_as_the_configs():
    batch = ConfigBatch(**arrays(r=lambda r: r.astype(np.float64), d=lambda d: d.astype(np.int64)))
    assert (batch.ks.dtype, batch.d.dtype, batch.r.dtype) == (np.int8, np.int8, np.int32)
    assert [batch.config(i) for i in range(len(batch))] == CONFIGS
    empty = ConfigBatch.from_configs([])
    assert len(empty) == 0 and empty.ks.shape == (0, 20)


def zeros(batch: ConfigBatch) -> np.ndarray:
    return np.zeros(len(batch))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"resolutions": [float("nan")]},
            "resolutions[0]: expected an integer in 32..1024, got nan",
        ),
        ({"resolutions": [160, 5000]}, "resolutions[1]: expected an integer in 32..1024, got 5000"),
        ({"resolutions": []}, "resolutions: expected at least one resolution"),
        (
            {"budget_ms": float("nan")},
            "budget_ms: expected a positive number of milliseconds, got nan",
        ),
        ({"budget_ms": -1.0}, "budget_ms: expected a positive number of milliseconds, got -1.0"),
        ({"width": 2.0}, "w: expected one of (1.0, 1.2) for MobileNetV3, got 2.0"),
    ],
)
def test_search_parameters_are_refused_by_name(kwargs, message):
    arguments = {
        "accuracy": zeros,
        "latency": zeros,
        "budget_ms": 10.0,
        "resolutions": [160],
        "width": 1.2,
        **kwargs,
    }
    with pytest.raises(ValueError) as info:
        evolutionary_search(**arguments)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"population": 1}, "population: expected an integer in 2..1000000, got 1"),
        ({"population": 2}, "population: 2 cannot hold 2 parents and 1 mutants"),
        ({"mutate_prob": float("nan")}, "mutate_prob: expected a number in 0..1, got nan"),
        ({"seed": -1}, "seed: expected an integer in 0..9223372036854775807, got -1"),
    ],
)
def test_search_settings_are_refused_by_name(fields, message):
    with pytest.raises(ValueError) as info:
        SearchSettings(**fields)
    assert str(info.value).startswith(message)


def test_a_batch_of_proxylessnas_subnets_round_trips_with_its_tail_block():
    from ofa.config import SubnetConfig, sample_configs

    configs = sample_configs(6, seed=3, resolutions=(160, 224), w=1.3, family="proxyless")
    batch = ConfigBatch.from_configs(configs)
    assert (batch.family, batch.w, batch.ks.shape, batch.d.shape) == (
        "proxyless",
        1.3,
        (6, 21),
        (6, 5),
    )
    assert [batch.config(i) for i in range(6)] == configs
    assert batch.active.shape == (6, 21) and batch.active[:, 20].all()
    assert (batch.active.sum(axis=1) == [len(c.active_blocks) for c in configs]).all()
    with pytest.raises(
        ValueError, match=r"^family: a batch holds one family, got \['mbv3', 'proxyless'\]"
    ):
        ConfigBatch.from_configs([*CONFIGS, SubnetConfig.smallest(w=1.3, family="proxyless")])
    with pytest.raises(ValueError, match=r"^ks: expected an array of shape \(n, 21\)"):
        ConfigBatch(batch.ks[:, :20], batch.e, batch.d, batch.r, 1.3, "proxyless")
    with pytest.raises(ValueError, match=r"^w: expected one of \(1.3,\) for ProxylessNAS"):
        ConfigBatch(batch.ks, batch.e, batch.d, batch.r, 1.0, "proxyless")

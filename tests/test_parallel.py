"""core.parallel: how many runs train at once, and the in-process path of map_side_by_side."""

from __future__ import annotations

import pytest
import torch

from geoloc_lib.core import device as D
from geoloc_lib.core import parallel as P
from geoloc_lib.core.errors import ConfigError


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2", None])
def test_parallel_runs_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="parameter parallel_runs: expected an integer >= 1"):
        P.check_parallel_runs(bad)


def test_runs_share_a_cpu_but_train_one_at_a_time_on_an_accelerator(monkeypatch):
    assert P.runs_at_once(2, "cpu") == 2
    assert P.runs_at_once(2, "cpu", jobs=1) == 1 and P.runs_at_once(2, "cpu", jobs=5) == 2
    monkeypatch.setattr(D, "resolve_device", lambda device="auto": torch.device("cuda"))
    with pytest.warns(UserWarning, match="on cuda the runs train one at a time"):
        assert P.runs_at_once(2, "auto") == 1
    assert P.runs_at_once(1, "auto") == 1  # nothing to warn about


def test_one_run_at_a_time_calls_in_this_process_in_order():
    seen = []
    out = P.map_side_by_side(lambda a, b: seen.append(a) or a + b, [(1, 2), (3, 4)], 1)
    assert out == [3, 7] and seen == [1, 3]


def test_fewer_jobs_than_parallel_runs_run_here_on_every_core():
    """One job left with parallel_runs=2 runs in this process with all its threads, not in a
    worker with half of them."""
    assert P.map_side_by_side(torch.get_num_threads, [()], 2) == [torch.get_num_threads()]
    assert P.map_side_by_side(torch.get_num_threads, [], 2) == []

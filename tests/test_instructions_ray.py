"""``--engine ray``: the same tasks on a local Ray started by the test, two CPU actors loading the
tiny checkpoint once each; the same images as the local worker processes, and resume works."""

from __future__ import annotations

import json

import pytest

from test_flux2_backend import assert_nearly_identical

from instructions_fixtures import PLANNER, call_log, calls, images_under, run, sample_inputs

pytestmark = pytest.mark.serial  # starts a Ray cluster

__all__ = ["call_log"]


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray the test starts (imported here, not at collection: most test processes never need it)."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_actors_make_the_same_images_as_local_workers(tmp_path, klein, local_ray, call_log):
    inputs = sample_inputs(tmp_path / "inputs", questions=5)
    on_ray = run(inputs, klein, output_root=tmp_path / "ray", engine="ray", num_gpus=2)
    assert on_ray.summary.state == "finished" and on_ray.summary.progress.done == 6
    assert sum(calls(call_log).values()) == 6
    assert local_ray.is_initialized()  # a Ray the caller started is left running

    run(inputs, klein, output_root=tmp_path / "local", num_gpus=2)
    from_ray, from_processes = images_under(tmp_path / "ray"), images_under(tmp_path / "local")
    assert from_ray.keys() == from_processes.keys() and len(from_ray) == 6
    for name in from_ray:
        assert_nearly_identical(from_ray[name], from_processes[name])
    stats = json.loads((tmp_path / "ray" / "spatial" / PLANNER / "flux2-klein-tiny" / "stats.json").read_text())
    assert stats["2 generation"] == [0, 4] and stats["0 generation"] == [2]

    again = run(inputs, klein, output_root=tmp_path / "ray", engine="ray", num_gpus=2)
    assert again.summary.progress.done == 6 and sum(calls(call_log).values()) == 6 + 6  # nothing made again


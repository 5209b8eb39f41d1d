"""The real ``replicate`` SDK against the emulator served over HTTPS, as it is used against the service:
``replicate.run`` hands back ``FileOutput`` objects whose ``read()`` gives the image, a file input is
uploaded through ``/v1/files`` and used, ``owner/name:version`` runs fetch the version, and
``models.get`` and ``predictions.list`` answer. The training set runs over HTTPS too."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import replicate
from PIL import Image
from replicate.helpers import FileOutput
from trainset_fixtures import REPLICATE_TOKEN, running_services, source_file  # noqa: F401 - source_file is a fixture

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO
from imggen.emulators.replicate_more_routes import version_id
from imggen.emulators.replicate_server import running_replicate_emulator
from imggen.emulators.replicate_state import ReplicateEmulatorConfig


@pytest.fixture
def emulator(monkeypatch):
    config = ReplicateEmulatorConfig(api_token=REPLICATE_TOKEN, tls=True, grid_latency_s=0.05, grid_megapixels=0.05)
    with running_replicate_emulator(config) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.certificate))  # as `imggen emulate replicate --tls` says
        yield server


def client_for(server) -> replicate.Client:
    return replicate.Client(api_token=REPLICATE_TOKEN, base_url=server.base_url)


def test_run_returns_file_outputs_that_read_and_uploads_a_file_input(emulator, source_file):  # noqa: F811
    assert emulator.base_url.startswith("https://")
    with open(source_file, "rb") as handle:
        output = client_for(emulator).run(FLUX_KONTEXT_PRO, input={"prompt": "a 3x3 grid", "input_image": handle})
    assert isinstance(output, FileOutput)  # what the service's https outputs become; a plain str offline is a trap
    with Image.open(io.BytesIO(output.read())) as grid:
        assert grid.width > 0
    upload, create = emulator.requests[0], emulator.requests[1]
    assert (upload.method, upload.path, upload.status) == ("POST", "/v1/files", 201)
    (uploaded,) = emulator.more.uploads.values()
    assert uploaded.data == source_file.read_bytes()
    assert create.body["input"]["input_image"] == f"{emulator.base_url}/v1/files/{uploaded.id}"  # used as the input


def test_a_version_pinned_run_and_the_models_and_predictions_lists(emulator, source_file):  # noqa: F811
    client = client_for(emulator)
    version = version_id(FLUX_KONTEXT_PRO)
    with open(source_file, "rb") as handle:
        output = client.run(f"{FLUX_KONTEXT_PRO}:{version}", input={"prompt": "a grid", "input_image": handle})
    assert isinstance(output, FileOutput) and output.read()
    paths = [(r.method, r.path) for r in emulator.requests]
    assert ("POST", "/v1/predictions") in paths and ("GET", f"/v1/models/{FLUX_KONTEXT_PRO}/versions/{version}") in paths
    model = client.models.get(FLUX_KONTEXT_PRO)
    assert (model.owner, f"{model.owner}/{model.name}", model.latest_version.id) == (
        "black-forest-labs", FLUX_KONTEXT_PRO, version)
    listed = client.predictions.list().results
    assert [p.id for p in listed] == sorted(emulator.predictions, key=lambda i: -emulator.predictions[i].created_at)
    with pytest.raises(replicate.exceptions.ReplicateError) as unknown:
        client.predictions.create(version="0" * 64, input={"prompt": "x"})
    assert unknown.value.status == 422


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_training_set_runs_against_the_https_emulator(tmp_path, source_file):  # noqa: F811
    with running_services(tls=True) as services:
        environment = {**os.environ, **services.environment(), "SSL_CERT_FILE": str(services.replicate.certificate)}
        assert environment["REPLICATE_BASE_URL"].startswith("https://")
        ran = subprocess.run([sys.executable, "-m", "imggen.cli", "trainset", "--source", str(source_file),
                              "--user-id", "u", "--actor-id", "a", "--target", "2", "--judge", "hash",
                              "--storage", "local", "--output", str(tmp_path / "runs")],
                             env=environment, capture_output=True, text=True, timeout=240)
        assert ran.returncode == 0, ran.stderr
        assert sum(services.replicate.counts.paid.values()) >= 3  # a grid and two upscales, paid over HTTPS
    assert len(list((tmp_path / "runs").rglob("training-image*.jpg"))) == 2

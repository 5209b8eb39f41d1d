"""Shared pieces of the training-set tests: the emulators and a moto S3 server on 127.0.0.1, and a source image.

``services`` starts the Replicate and OpenAI emulators and a moto S3 server, and points the
environment (the variables a user would set) at them, so every client is the real one.
"""

from __future__ import annotations

import contextlib
import io
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from PIL import Image, ImageDraw

from imggen.emulators.openai_server import OpenAIEmulatorConfig, RunningOpenAIEmulator, openai_emulator_in_thread
from imggen.emulators.replicate_server import ReplicateEmulator, running_replicate_emulator
from imggen.emulators.replicate_state import ReplicateEmulatorConfig

REPLICATE_TOKEN = "r8_TrainsetTestTokenNeverShown0123"
OPENAI_KEY = "sk-trainset-test-key-never-shown-0123"
AWS_KEY, AWS_SECRET = "AKIATRAINSETTEST0123", "trainset-test-secret-never-shown"
BUCKET = "user-files-test"


def source_image_bytes(size: int = 256) -> bytes:
    """A source picture with enough structure for grids whose tiles differ."""
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for index, colour in enumerate([(220, 40, 40), (40, 180, 60), (40, 60, 220), (230, 200, 30)]):
        offset = 20 + index * size // 5
        draw.ellipse((offset, offset // 2, offset + size // 4, offset // 2 + size // 4), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "source.png"
    path.write_bytes(source_image_bytes())
    return path


def overlapping(predictions) -> int:
    """The most emulated predictions that were running at the same moment."""
    events = sorted([(p.created_at, 1) for p in predictions] + [(p.completed_at, -1) for p in predictions])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def bytes_unread_by(port: int) -> int:
    """Bytes sent to the local server on ``port`` that it has not read yet (the kernel's receive queues)."""
    unread = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, queues = line.split()[1], line.split()[4]
        if int(local.rpartition(":")[2], 16) == port:
            unread += int(queues.partition(":")[2], 16)
    return unread


def wait_until_creates_are_answered(server: ReplicateEmulator, timeout_s: float = 30.0) -> None:
    """Wait until the emulator has read every request sent to it so far and answered every create
    (the calls that are paid for): it runs on a thread of the test process, which a busy machine
    can leave waiting while a stopped or killed command's requests sit unread in the kernel."""
    deadline = time.monotonic() + timeout_s
    port = urlsplit(server.base_url).port
    while bytes_unread_by(port) or not all(r.status for r in list(server.requests) if r.method == "POST"):
        assert time.monotonic() < deadline, "the emulator never caught up with the requests sent to it"
        time.sleep(0.01)


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 server on a free port holding only the (empty) test bucket; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its state per process, not per server: start every server empty
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=AWS_KEY,
        aws_secret_access_key=AWS_SECRET, config=Config(signature_version="s3v4"),
    )


@dataclass
class Services:
    replicate: ReplicateEmulator
    openai: RunningOpenAIEmulator
    s3_endpoint: str

    def environment(self) -> dict[str, str]:
        """The variables a user would set to run against these services."""
        return {
            "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
            "REPLICATE_BASE_URL": self.replicate.base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": self.openai.base_url,
            "AWS_ACCESS_KEY": AWS_KEY,
            "AWS_ACCESS_SECRET": AWS_SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_USER_FILES_BUCKET": BUCKET,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
        }

    def s3(self):
        return s3_client(self.s3_endpoint)


@contextlib.contextmanager
def running_services(
    *, grid_latency_s: float = 0.15, upscale_latency_s: float = 0.05, judge_latency_s: float = 0.0,
    near_duplicates: int = 0, tile_threshold: float = 10.0, **replicate_settings,
) -> Iterator[Services]:
    """The three services; ``replicate_settings`` go to the Replicate emulator's config (e.g. ``faults``)."""
    replicate_config = ReplicateEmulatorConfig(
        api_token=REPLICATE_TOKEN, grid_latency_s=grid_latency_s, upscale_latency_s=upscale_latency_s,
        grid_megapixels=0.15, near_duplicates=near_duplicates, **replicate_settings,
    )
    for behaviour in replicate_config.behaviours.values():
        behaviour.starting_s = min(behaviour.starting_s, behaviour.latency_s / 2)
    openai_config = OpenAIEmulatorConfig(api_key=OPENAI_KEY, latency_s=judge_latency_s, tile_threshold=tile_threshold)
    with running_replicate_emulator(replicate_config) as replicate, \
            openai_emulator_in_thread(openai_config) as openai_server, moto_s3() as endpoint:
        yield Services(replicate, openai_server, endpoint)


def use_services(started: Services, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Point this process's environment at ``started``, as a user's shell would."""
    for name, value in started.environment().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(folder)  # no stray .env file is read


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Services]:
    with running_services() as started:
        use_services(started, monkeypatch, tmp_path)
        yield started

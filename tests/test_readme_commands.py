"""Every command in README.md, read from the README at test time, runs for real.

Each command runs with ``bash -c`` in a fresh folder standing in for the repository root: ``data``,
``notebooks``, ``scripts``, ``benchmarks`` and ``.venv`` link to the repository's, ``.venv/bin`` is
first on PATH, and the environment points every provider at local servers this module starts (the
OpenAI and Replicate emulators, a moto S3) with fake keys, so nothing reaches the internet.

What the folder holds besides, standing in for what a reader has (see ``STAND_INS``): the photo
and checkpoint the commands name, and for the GPU commands (``scripts/run_image_generation.sh``,
the instruction notebook) their default inputs with the tiny random checkpoint in place of the real
one; ``CUDA_VISIBLE_DEVICES`` is empty, so the same code runs on the CPU.

A command is either run, or an emulator (started, asked for an image with the real client,
stopped), or an environment line (applied to the commands it precedes), or listed in ``NOT_RUN``
with the reason. A README command nobody handles is run, so it fails here until it works or is
listed. Entries here that no longer match a README command fail too.
"""

from __future__ import annotations

import ast
import base64
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from browser_helpers import free_port
from PIL import Image
from readme_commands import ReadmeCommand, parse_readme
from trainset_fixtures import BUCKET, OPENAI_KEY, REPLICATE_TOKEN, Services, moto_s3, s3_client

from imggen.emulators.openai_server import OpenAIEmulatorConfig, openai_emulator_in_thread
from imggen.emulators.replicate_server import running_replicate_emulator
from imggen.emulators.replicate_state import ReplicateEmulatorConfig

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"
LINKED = ("data", "notebooks", "scripts", "benchmarks", ".venv")
COMMANDS = parse_readme(README.read_text(encoding="utf-8"))

# Commands this test does not run, and why. Everything else in the README is run.
NOT_RUN = {
    r"^make demo$": "sets up .venv, then runs the demo: CI runs `make demo` itself",
    r"^make test( TEST_WORKERS=\d+)?$": "the whole test suite, this file included: CI runs `make test` itself",
    r"^\.venv/bin/imggen demo --output demo-output$": "the body of `make demo` (CI runs it; tests/test_wheel.py "
                                                      "runs it from the wheel)",
    r"^source \.venv/bin/activate$": "changes only an interactive shell; here .venv/bin is first on PATH instead",
    r"^conda env create\b": "needs conda and a network; environment.yml is for other machines",
    r"^pip install\b": "installs into another machine's environment from PyPI",
    r"^(sudo )?apt-get install\b": "installs a system package as root (CI installs chromium itself)",
    r"^make test-quick$": "the suite without its slow tests: CI runs all of it through `make test`",
    r"^(make lab|\.venv/bin/jupyter lab)$": "starts JupyterLab for a person's browser (tests/test_browser_widgets.py "
                                            "drives one)",
    r"^ray start\b": "starts a node of a Ray cluster on a head or worker machine",
    r"^ray get-auth-token\b": "writes a Ray cluster's token into ~/.ray of the head machine (tests/ray_head.py "
                               "gives its head a token of its own)",
    r"^accelerate launch\b": "trains a LoRA: needs a GPU, the trainer's scripts and a model's weights "
                             "(tests/test_export.py reads each export as its trainer does)",
    r"^RAY_ADDRESS=HEAD_IP\S* imggen instructions .*--engine ray\b":
        "joins the cluster of the two `ray start` lines and reads /shared (the contract's instructions-ray kind "
        "joins a head started with `ray start --head` and RAY_AUTH_MODE=token, tests/ray_head.py)",
    r"^PYTORCH_CUDA_ALLOC_CONF=": "a CUDA allocator setting against GPU out-of-memory; nothing to run without a GPU",
}

# Commands run with arguments added: as written they take minutes on 2 cores; the arguments keep
# the code path and shrink only the amount of work.
SHRUNK = {
    r"^imggen styles .*--backend flux2\b": (
        ["--max-samples", "1"],
        "120 noise images take ~100 s on 2 CPU cores; one sample per dataset runs the same code"),
    r"^\.venv/bin/python benchmarks/engine_scale\.py$": (
        ["--tasks", "20000"], "a million no-op tasks take over a minute; the printed RESULT line is the same"),
    r"^\.venv/bin/python benchmarks/styles_throughput\.py$": (
        ["--scale", "20", "--rpm", "60", "--latencies", "1,4", "--windows", "2", "--latency-multiple", "4",
         "--seed-images", "10", "--window-kinds", "bucket"],
        "three latencies under four ways of counting, 25 round trips each, take seven minutes; two latencies "
        "under two ways of counting, for two windows, are measured the same way"),
    r"^\.venv/bin/python benchmarks/instructions_overhead\.py$": (
        ["--images", "4"], "800 images on the CPU take minutes; 4 run the same code"),
    r"^\.venv/bin/python benchmarks/trainset_wall\.py$": (
        ["--k", "300", "--target", "6", "--repeats", "1"],
        "the seed's sequential flow takes a minute at k=30; faster emulators, fewer images"),
    r"^\.venv/bin/python benchmarks/trainset_kill_repay\.py$": (
        ["--k", "300", "--kills", "1"], "four runs per wait take a minute at k=30; faster emulators, one kill"),
}

# Placeholders in the README's text, replaced before running (the reader puts their own there).
TEXT_PLACEHOLDERS = {
    "https://example.com/source.jpg": "source.jpg",  # a JPEG of data/trainset/sample_source.png the test writes
}
# ``export`` values that are placeholders: the test's fake key and the emulator replace them.
ENV_PLACEHOLDERS = {("OPENAI_API_KEY", "sk-...")}
# The emulators' ports in the README; each run uses free ports instead, in every command and URL.
README_PORTS = {"openai": 8011, "replicate": 8012}
EMULATOR = re.compile(r"^imggen emulate (openai|replicate)\b")
# Commands that must not call a provider (the README says they send nothing or run offline).
OFFLINE = re.compile(r"--dry-run|--local\b|--backend flux2|^imggen (tiny-checkpoint|instructions|demo)\b")


def stand_ins(folder: Path, checkpoint: Path) -> None:
    """What a reader has that the repository does not: their photo, a source image for the Python
    example, the default checkpoint of the GPU commands, and planning-model outputs with their
    conditioning images where ``imggen instructions`` looks by default (the current folder)."""
    with Image.open(REPO / "data" / "trainset" / "sample_source.png") as source:
        for name in ("photo.jpg", "source.jpg"):
            source.convert("RGB").save(folder / name, format="JPEG", quality=92)
    shutil.copytree(checkpoint, folder / "checkpoints" / "flux2-klein-4B")
    demo_results = REPO / "data" / "instructions" / "predicted_instructions" / "DemoPlanner" / "results.jsonl"
    for planner in ("Qwen3-VL-4B-Instruct", "InternVL3-8B"):
        (folder / "predicted_instructions" / planner).mkdir(parents=True)
        shutil.copy(demo_results, folder / "predicted_instructions" / planner / "results.jsonl")
    (folder / "datasets").symlink_to(REPO / "data" / "instructions" / "datasets")


def named_checkpoints(text: str) -> list[str]:
    """Relative checkpoint folders a command names with --flux_ckpt (placed there before it runs)."""
    return [name for name in re.findall(r"--flux[_-]ckpt[ =](\S+)", text) if not name.startswith("/")]


def matching(patterns, text: str) -> list:
    return [pattern for pattern in patterns if re.search(pattern, text)]


def category(command: ReadmeCommand) -> str:
    if matching(NOT_RUN, command.text):
        return "not run"
    if command.kind == "environment":
        return "environment"
    if EMULATOR.match(command.text):
        return "emulator"
    return "run"


RUN = [c for c in COMMANDS if category(c) == "run"]
EMULATORS = [c for c in COMMANDS if category(c) == "emulator"]


# -- services ----------------------------------------------------------------------------------
@dataclass
class Started:
    services: Services

    def requests(self) -> int:
        return len(self.services.openai.requests) + len(self.services.replicate.requests)


@pytest.fixture(scope="module")
def started() -> Started:
    """The providers every command may talk to, with the fake keys of ``Services.environment``."""
    openai_config = OpenAIEmulatorConfig(api_key=OPENAI_KEY, render_max_side=32, images_per_minute=100_000)
    replicate_config = ReplicateEmulatorConfig(
        api_token=REPLICATE_TOKEN, grid_latency_s=0.1, upscale_latency_s=0.05, grid_megapixels=0.15)
    for behaviour in replicate_config.behaviours.values():
        behaviour.starting_s = min(behaviour.starting_s, 0.05)
    with openai_emulator_in_thread(openai_config) as openai_server, \
            running_replicate_emulator(replicate_config) as replicate, moto_s3() as endpoint:
        yield Started(Services(replicate, openai_server, endpoint))


def base_environment() -> dict[str, str]:
    """This process's environment without any provider setting, with .venv/bin first on PATH and no GPU."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("OPENAI_", "REPLICATE_", "AWS_", "RAY_"))}
    environment["PATH"] = f"{VENV_BIN}{os.pathsep}{environment.get('PATH', '')}"
    environment["CUDA_VISIBLE_DEVICES"] = ""  # the GPU commands run their code on the CPU
    return environment


def with_ports(text: str, ports: dict[int, int]) -> str:
    for readme_port, port in ports.items():
        text = re.sub(rf"(127\.0\.0\.1:|--port[ =]){readme_port}\b", rf"\g<1>{port}", text)
    return text


def apply_environment(environment: dict[str, str], line: ReadmeCommand, ports: dict[int, int]) -> None:
    """Apply an ``export`` or assignment line as a reader's shell would, placeholders excepted."""
    for name, value in line.assignments().items():
        if (name, value) in ENV_PLACEHOLDERS:
            continue  # the test's fake key and endpoint are already set
        assert "..." not in value, f"README line {line.line}: placeholder {name}={value} that this test cannot fill"
        environment[name] = with_ports(value, ports)


# -- the folder a command runs in ---------------------------------------------------------------
@pytest.fixture
def repo_folder(tmp_path: Path, klein: Path) -> Path:  # noqa: F811 - the fixture imported above
    folder = tmp_path / "repo"
    folder.mkdir()
    for name in LINKED:
        (folder / name).symlink_to(REPO / name)
    stand_ins(folder, klein)
    return folder


# Commands that read a folder an earlier README command writes (``--output FOLDER``) find it in their
# folder, as a reader following the README would: that command's output, copied from its run in this
# test process, or made by running it first.
READS_OUTPUT = re.compile(r"^imggen (?:sheet|export) (\S+)")


def writer_of(command: ReadmeCommand) -> ReadmeCommand | None:
    match = READS_OUTPUT.match(command.text)
    if not match:
        return None
    output = re.compile(rf"--output {re.escape(match.group(1))}(\s|$)")
    writers = [c for c in COMMANDS if c.line < command.line and c.kind == "shell" and output.search(c.text)]
    assert writers, f"README line {command.line} reads {match.group(1)}, which no earlier command writes"
    return writers[0]


def prepared_text(command: ReadmeCommand, folder: Path, checkpoint: Path) -> str:
    text = command.text
    for placeholder, stand_in in TEXT_PLACEHOLDERS.items():
        text = text.replace(placeholder, stand_in)
    for pattern in matching(SHRUNK, text):
        text = text.rstrip() + " " + " ".join(SHRUNK[pattern][0])
    for name in named_checkpoints(text):
        if not (folder / name).exists():
            shutil.copytree(checkpoint, folder / name)
    return text


WRITERS = {c.line: writer for c in RUN if (writer := writer_of(c)) is not None}  # reader's line -> its writer
WRITTEN: dict[int, Path] = {}  # a writer's line -> the folder its run wrote, in this test process


def written_by(command: ReadmeCommand) -> str:
    return re.search(r"--output (\S+)", command.text).group(1)


def lay_in_output_of(writer: ReadmeCommand, folder: Path, started: Started, checkpoint: Path) -> None:
    """What the README command ``writer`` wrote, in ``folder``: a copy of its run's in this process,
    or its run now, as a reader following the README would have run it first."""
    if writer.line in WRITTEN:
        shutil.copytree(WRITTEN[writer.line], folder / written_by(writer), symlinks=True)
        return
    _, run = run_readme_command(writer, folder, started, checkpoint)
    assert run.returncode == 0, f"README line {writer.line}, run first, exited {run.returncode}:\n{run.stderr[-5000:]}"
    WRITTEN[writer.line] = folder / written_by(writer)


# -- what a command must leave behind (the README's promises) -----------------------------------
def outputs_of(command: ReadmeCommand) -> list[Callable]:
    checks = []
    text = command.text
    if match := re.match(r"^imggen tiny-checkpoint (\S+)$", text):
        made = match.group(1)
        checks.append(lambda folder, run, services: _exists(folder / made / "model_index.json"))
    if re.match(r"^imggen styles .*--style cartoon realistic\b", text) and "--dry-run" not in text:
        output = re.search(r"--output (\S+)", text).group(1)
        checks.append(lambda folder, run, services: [
            _some(folder / output / "images" / "by_style" / style, "*.png") for style in ("cartoon", "realistic")])
    if "--backend flux2" in text:
        local_output = re.search(r"--output (\S+)", text).group(1)
        checks.append(lambda folder, run, services: _some(folder / local_output / "images" / "by_style", "*/*.png"))
    if re.search(r"imggen instructions|run_image_generation\.sh|02_instruction_images", text):
        checks.append(lambda folder, run, services: (_some(folder / "generated_images", "**/img_0.png"),
                                                     _some(folder / "generated_images", "**/stats.json")))
    if text.startswith("imggen trainset"):
        checks.append(lambda folder, run, services: _url_lines(run.stdout, 20))
    if text.startswith("imggen trainset") and "--storage s3" in text:
        user, actor = re.search(r"--user-id (\S+)", text).group(1), re.search(r"--actor-id (\S+)", text).group(1)
        checks.append(lambda folder, run, services: _objects(services, f"{user}/{actor}/", 20))
    if match := re.match(r"^imggen demo engine --output (\S+)", text):
        demo = match.group(1)
        checks.append(lambda folder, run, services: [_exists(folder / demo / name) for name in engine_demo_files()])
    if match := re.match(r"^imggen sheet (\S+)$", text):
        sheets = Path(match.group(1)) / "images" / "sheets"
        checks.append(lambda folder, run, services: (_some(folder / sheets, "*.html"), _some(folder / sheets, "*.png")))
    if match := re.match(r"^imggen export (\S+) --to hf (\S+)$", text):
        metadata = Path(match.group(2)) / "train" / "metadata.jsonl"
        checks.append(lambda folder, run, services: _exists(folder / metadata))
    if re.search(r"\bbenchmarks/\w+\.py\b", text):
        checks.append(lambda folder, run, services: _result_line(run.stdout))
    if text.startswith("papermill"):
        executed = text.split()[2]
        checks.append(lambda folder, run, services: _exists(folder / executed))
    if text.startswith("papermill") and "--engine imggen" in text:
        checks.append(lambda folder, run, services: _no_transport_warning(run.stdout + run.stderr))
    if command.kind == "python" and "generate_training_data" in text:
        checks.append(lambda folder, run, services: _printed_training_set(run.stdout, 20))
    return checks


def _no_transport_warning(output: str) -> None:
    assert "running over TCP without encryption" not in output, "the kernel warned of plain-TCP channels"


def _exists(path: Path) -> None:
    assert path.exists(), f"{path.name} was not made"


def _some(folder: Path, pattern: str) -> None:
    assert list(folder.glob(pattern)), f"nothing matching {pattern} under {folder}"


def _url_lines(stdout: str, count: int) -> None:
    urls = [line for line in stdout.splitlines() if re.match(r"^(https?|file)://", line)]
    assert len(urls) == count, f"{len(urls)} training image URLs printed, not {count}"


def _objects(services: Services, prefix: str, count: int) -> None:
    """``count`` images under ``prefix``, each with its caption beside it, and ``metadata.jsonl``."""
    listed = s3_client(services.s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    names = sorted(item["Key"].removeprefix(prefix) for item in listed)
    images = [name for name in names if name.endswith(".jpg")]
    assert len(images) == count, f"{len(images)} images under {prefix} in the bucket, not {count}"
    captions = [f"{Path(name).stem}.txt" for name in images]
    assert names == sorted([*images, *captions, "metadata.jsonl"]), f"not each image with its caption: {names}"


def engine_demo_files() -> list[str]:
    """The files the README's ``engine-demo/`` tree lists."""
    tree = re.search(r"```\nengine-demo/\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S).group(1)
    return [line.split()[0] for line in tree.splitlines() if re.match(r"^  \S", line)]


def _result_line(stdout: str) -> None:
    """A benchmark ends with a ``RESULT name=value ...`` line, as the README says."""
    assert "`RESULT ...` line" in README.read_text(encoding="utf-8"), "the README no longer promises a RESULT line"
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    assert re.fullmatch(r"RESULT( \w+=[\w.+-]+)+", last), f"the last line is not a RESULT line:\n{stdout[-2000:]}"


def _printed_training_set(stdout: str, count: int) -> None:
    urls_text, grids, total = stdout.strip().splitlines()[-1].rsplit(" ", 2)
    urls = ast.literal_eval(urls_text)
    assert len(urls) == count and int(total) == count, stdout[-2000:]
    assert int(grids) >= 1


# -- the tests ---------------------------------------------------------------------------------
def test_every_readme_command_is_run_or_listed():
    kinds = {c.text: category(c) for c in COMMANDS}
    assert {"run", "emulator", "environment", "not run"} <= set(kinds.values()), kinds
    for command in COMMANDS:
        if command.kind == "environment" and category(command) == "environment":
            for name, value in command.assignments().items():
                assert (name, value) in ENV_PLACEHOLDERS or "..." not in value, \
                    f"README line {command.line}: {name}={value} is a placeholder this test does not fill"
    texts = [c.text for c in COMMANDS]
    tables = {"NOT_RUN": NOT_RUN, "SHRUNK": SHRUNK}
    for table, patterns in tables.items():
        for pattern in patterns:
            assert any(re.search(pattern, text) for text in texts), f"{table}: {pattern!r} matches no README command"
    for placeholder in TEXT_PLACEHOLDERS:
        assert any(placeholder in text for text in texts), f"placeholder {placeholder!r} is gone from the README"
    assignments = {pair for c in COMMANDS if c.kind == "environment" for pair in c.assignments().items()}
    assert ENV_PLACEHOLDERS <= assignments, "an ENV_PLACEHOLDERS entry is gone from the README"
    assert all(reason.strip() for reason in NOT_RUN.values())
    for provider, port in README_PORTS.items():
        assert any(EMULATOR.match(t) and provider in t and f"--port {port}" in t for t in texts), provider


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", RUN, ids=[c.id for c in RUN])
def test_readme_command_runs(command: ReadmeCommand, repo_folder: Path, started: Started, klein: Path):  # noqa: F811
    if command.line in WRITERS:
        lay_in_output_of(WRITERS[command.line], repo_folder, started, klein)
    before = started.requests()
    text, run = run_readme_command(command, repo_folder, started, klein)
    assert run.returncode == 0, (
        f"README line {command.line} ({command.where}) exited {run.returncode}:\n{text}\n"
        f"--- stdout\n{run.stdout[-3000:]}\n--- stderr\n{run.stderr[-5000:]}"
    )
    if OFFLINE.search(text):
        assert started.requests() == before, f"README line {command.line} is offline but called a provider"
    for check in outputs_of(command):
        check(repo_folder, run, started.services)
    if command in WRITERS.values():
        WRITTEN[command.line] = repo_folder / written_by(command)


def run_readme_command(command: ReadmeCommand, folder: Path, started: Started,
                       checkpoint: Path) -> tuple[str, subprocess.CompletedProcess]:
    """``command`` run in ``folder`` as the README gives it, every provider one of ``started``: the text
    run, and how it ended."""
    environment = base_environment()
    environment.update(started.services.environment())
    for line in command.exports:
        apply_environment(environment, line, {})
    text = prepared_text(command, folder, checkpoint)
    if command.kind == "python":
        (folder / "readme_example.py").write_text(text, encoding="utf-8")
        argv = ["python", "readme_example.py"]
    else:
        argv = ["bash", "-c", text]
    return text, subprocess.run(argv, cwd=folder, env=environment, capture_output=True, text=True, timeout=280)


def probe_openai(environment: dict[str, str]) -> None:
    import openai

    from imggen.backends.openai_models import DEFAULT_MODEL

    client = openai.OpenAI(api_key=environment["OPENAI_API_KEY"], base_url=environment["OPENAI_BASE_URL"],
                           max_retries=0, timeout=30)
    answer = client.images.generate(model=DEFAULT_MODEL, prompt="a lighthouse at dusk", size="1024x1024",
                                    quality="low")
    with Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))) as image:
        image.load()


def probe_replicate(environment: dict[str, str]) -> None:
    import replicate

    client = replicate.Client(api_token=environment["REPLICATE_API_TOKEN"],
                              base_url=environment["REPLICATE_BASE_URL"], timeout=30)
    source = base64.b64encode((REPO / "data" / "trainset" / "sample_source.png").read_bytes()).decode()
    prediction = client.models.predictions.create(
        "black-forest-labs/flux-kontext-pro",
        input={"prompt": "a 3x3 grid of the character", "input_image": f"data:image/png;base64,{source}"},
    )
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    output = prediction.output if isinstance(prediction.output, str) else prediction.output[0]
    with urllib.request.urlopen(output, timeout=30) as response, Image.open(io.BytesIO(response.read())) as image:
        image.load()


PROBES = {"openai": probe_openai, "replicate": probe_replicate}


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the emulator exited with {process.returncode}: {process.stdout.read()}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on port {port} within {timeout:.0f}s")


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", EMULATORS, ids=[c.id for c in EMULATORS])
def test_emulator_command_serves_the_real_client(command: ReadmeCommand, tmp_path: Path):
    """The emulator starts as the README says, and the real client reaches it with the README's
    rehearsal settings (its ``export`` of the base URLs and example keys)."""
    provider = EMULATOR.match(command.text).group(1)
    ports = {README_PORTS[name]: free_port() for name in README_PORTS}
    environment = base_environment()
    for line in COMMANDS:
        if category(line) == "environment" and line.where == "prose":
            apply_environment(environment, line, ports)
    text = with_ports(command.text, ports)
    server = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=tmp_path, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(ports[README_PORTS[provider]], server)
        url = f"{provider.upper()}_BASE_URL"
        try:
            PROBES[provider](environment)
        except Exception as error:
            raise AssertionError(f"the real {provider} client with the README's {url}={environment.get(url)} "
                                 f"failed: {error!r}") from error
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

"""How many imggen files a reader follows from a command to where one image leaves the process.

Runs a one-image job in this process under a profiler and records which imggen file calls which
(across ``await``, tasks the code starts and work it hands to threads). The path of an image is the
union of the shortest call paths from the command's module to every place the job reaches the outside:
a provider or the store (the openai, replicate, boto3 and aiohttp clients) and the disk
(``imggen/storage/atomic.py``). A shorter path is fewer files to read to follow an image.

``trainset``: ``imggen trainset`` against the Replicate and OpenAI emulators and a moto S3 server
(served by a child process, see trainset_wall.py): a grid drawn and judged, a tile upscaled and
stored in S3. ``styles``: ``imggen styles`` against the OpenAI emulator (in a thread): one prompt in
one style, written to its folder. Prints the files in the order a reader meets them, then
``RESULT trainset_files=<n> trainset_deepest=<d> styles_files=... styles_deepest=...`` (``deepest``: the
longest single chain).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import imggen

PACKAGE = Path(imggen.__file__).resolve().parent
OUTSIDE = ("openai", "replicate", "boto3", "botocore", "aiohttp", "httpx")  # clients that leave the process
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LOOP_STEP = ("asyncio/events.py", "_run")  # the event loop running a task's next step


def _name(filename: str) -> str | None:
    """``imggen/...py`` for a file of the package, ``<client>`` for a file of an outside client, else None."""
    parts = Path(filename).parts
    if "site-packages" in parts:
        top = parts[parts.index("site-packages") + 1]
        return f"<{top}>" if top in OUTSIDE else None
    with contextlib.suppress(ValueError):
        return "imggen/" + str(Path(filename).resolve().relative_to(PACKAGE))
    return None


def _stack(frame) -> list[str]:
    """The imggen files on the stack at ``frame``, outermost first, up to the step of a task."""
    files: list[str] = []
    while frame is not None:
        code = frame.f_code
        if code.co_filename.endswith(LOOP_STEP[0]) and code.co_name == LOOP_STEP[1]:
            break
        name = _name(code.co_filename)
        if name is not None and name.startswith("imggen/") and (not files or files[-1] != name):
            files.append(name)
        frame = frame.f_back
    return files[::-1]


class Paths:
    """The chain of files behind every call that leaves the process: the stack, and the stacks that
    started the task (or the thread) it runs in, back to the command."""

    def __init__(self) -> None:
        self.task_origins: dict[object, list[str]] = {}
        self.sinks: dict[str, list[str]] = {}  # what left the process, and the chain that led there -> the chain
        self._thread_origin = threading.local()
        self._lock = threading.Lock()

    def origin(self) -> list[str]:
        """The chain that led to the task or thread running now."""
        thread_origin = getattr(self._thread_origin, "chain", None)
        if thread_origin is not None:
            return thread_origin
        with contextlib.suppress(RuntimeError):
            return self.task_origins.get(asyncio.current_task(), [])
        return []

    def chain(self, frame) -> list[str]:
        return list(dict.fromkeys([*self.origin(), *_stack(frame)]))

    def profile(self, frame, event: str, arg) -> None:
        if event != "call":
            return
        callee = _name(frame.f_code.co_filename)
        if callee is None:
            return
        sink = None
        if callee.startswith("<"):
            caller = frame.f_back
            if caller is not None and (_name(caller.f_code.co_filename) or "").startswith("imggen/"):
                sink = f"{callee} {frame.f_code.co_name}"
        elif callee == "imggen/storage/atomic.py" and str(frame.f_locals.get("path", "")).endswith(IMAGE_SUFFIXES):
            sink = f"the disk ({Path(str(frame.f_locals['path'])).suffix} file)"
        if sink is not None:
            chain = self.chain(frame.f_back)
            with self._lock:
                self.sinks.setdefault(f"{sink} from {chain[-1] if chain else '?'}: {' > '.join(chain)}", chain)

    def files(self) -> list[str]:
        """Every file on the chains, in the order a reader meets them."""
        return list(dict.fromkeys(name for chain in self.sinks.values() for name in chain))


@contextlib.contextmanager
def traced(paths: Paths):
    """Profile every thread, and record the chain behind every task started and every thread handed work."""
    loop_class = asyncio.BaseEventLoop
    create_task, to_thread = loop_class.create_task, asyncio.to_thread

    def recording_create_task(self, coro, **kwargs):
        task = create_task(self, coro, **kwargs)
        paths.task_origins[task] = paths.chain(sys._getframe(1))
        return task

    async def recording_to_thread(func, *args, **kwargs):
        chain = paths.chain(sys._getframe(1))

        def with_origin():
            paths._thread_origin.chain = chain
            try:
                return func(*args, **kwargs)
            finally:
                paths._thread_origin.chain = None
        return await to_thread(with_origin)

    loop_class.create_task, asyncio.to_thread = recording_create_task, recording_to_thread
    threading.setprofile(paths.profile)
    sys.setprofile(paths.profile)
    try:
        yield
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        loop_class.create_task, asyncio.to_thread = create_task, to_thread


def trace_trainset(folder: Path) -> Paths:
    from trainset_wall import SOURCE, provider_process

    from imggen.pipelines.trainset.cli import main

    paths = Paths()
    with provider_process(k=30, poll_faults=0, throttle=0), traced(paths):
        code = main(["--source", str(SOURCE), "--user-id", "u1", "--actor-id", "a1", "--target", "1",
                     "--output", str(folder / "runs")])
    assert code == 0, f"imggen trainset exited {code}"
    return paths


def trace_styles(folder: Path) -> Paths:
    from imggen.emulators.openai_server import OpenAIEmulatorConfig, openai_emulator_in_thread
    from imggen.pipelines.styles.cli import main

    prompts = folder / "prompts.jsonl"
    prompts.write_text('{"dataset": "d", "sample_id": "s1", "text": "a lighthouse at dusk"}\n', encoding="utf-8")
    key = "sk-call-paths-0123456789"
    paths = Paths()
    with openai_emulator_in_thread(OpenAIEmulatorConfig(api_key=key, render_max_side=16)) as server:
        os.environ.update(OPENAI_API_KEY=key, OPENAI_BASE_URL=server.base_url)
        with traced(paths):
            code = main(["--prompts", str(prompts), "--output", str(folder / "out"), "--style", "cartoon",
                         "--size", "1024x1024", "--quality", "low"])
    assert code == 0, f"imggen styles exited {code}"
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", choices=["trainset", "styles"], help="default: both")
    parser.add_argument("--chains", action="store_true", help="print the chain behind every call that leaves")
    args = parser.parse_args()
    result = []
    for job in [args.job] if args.job else ["trainset", "styles"]:
        with tempfile.TemporaryDirectory() as folder:
            paths = {"trainset": trace_trainset, "styles": trace_styles}[job](Path(folder))
        for sink in paths.sinks if args.chains else ():
            print(f"{job}: {sink}")
        files = paths.files()
        deepest = max(paths.sinks.values(), key=len)
        print(f"{job}: {len(files)} files on the path of one image, the deepest chain {len(deepest)}:")
        print("\n".join(f"  {name}" for name in files))
        result.append(f"{job}_files={len(files)} {job}_deepest={len(deepest)}")
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()

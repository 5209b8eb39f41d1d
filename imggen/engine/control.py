"""Pause, resume and stop a run from any thread: code, signal handlers or notebook widget callbacks.

Widget handlers may run on a kernel subshell thread, where setting an ``asyncio.Event`` does not
wake the loop. Every action here therefore takes a lock and hands the wake-up to the run's loop
with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import enum
import signal
import threading
from typing import Callable


class ControlState(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"


class RunControl:
    """The switches of one run. Safe to call from any thread, before or during the run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ControlState.RUNNING
        self._immediate = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._on_immediate_stop: Callable[[], None] | None = None
        self._on_change: Callable[[ControlState], None] | None = None

    @property
    def state(self) -> ControlState:
        return self._state

    @property
    def immediate(self) -> bool:
        return self._immediate

    def pause(self) -> None:
        """No new task starts; tasks in flight finish."""
        self._set(ControlState.PAUSED, only_from=ControlState.RUNNING)

    def resume(self) -> None:
        self._set(ControlState.RUNNING, only_from=ControlState.PAUSED)

    def stop(self, *, immediate: bool = False) -> None:
        """Graceful: let tasks in flight finish. Immediate: cancel them too (they go back to pending)."""
        with self._lock:
            self._immediate = self._immediate or immediate
        self._set(ControlState.STOPPING, only_from=None)
        if immediate:
            self._call_on_loop(self._cancel_in_flight)

    # -- used by the runner ------------------------------------------------------------------
    def bind(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        on_immediate_stop: Callable[[], None],
        on_change: Callable[[ControlState], None],
    ) -> None:
        """Attach to a run's loop; the callbacks run on that loop."""
        with self._lock:
            self._loop = loop
            self._changed = asyncio.Event()
            self._stopping = asyncio.Event()
            if self._state is ControlState.STOPPING:
                self._stopping.set()
            self._on_immediate_stop = on_immediate_stop
            self._on_change = on_change
            immediate = self._immediate
        if immediate:
            loop.call_soon(self._cancel_in_flight)

    def unbind(self) -> None:
        with self._lock:
            self._loop = None
            self._on_immediate_stop = None
            self._on_change = None

    async def proceed(self) -> bool:
        """Wait while paused. True when work may start, False once the run is stopping. Before a run
        binds the control (a part used on its own) nothing waits."""
        if self._changed is None:
            return self._state is not ControlState.STOPPING
        while True:
            if self._state is ControlState.RUNNING:
                return True
            if self._state is ControlState.STOPPING:
                return False
            self._changed.clear()
            if self._state is ControlState.PAUSED:
                await self._changed.wait()

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` (a backoff, a rate-limit hold) unless the run starts stopping first.

        True when the time passed, False when a stop cut it short: a stop never waits out a hold.
        Before a run binds the control it is a plain sleep.
        """
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return self._state is not ControlState.STOPPING
        if seconds <= 0:
            return not self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            return True
        return False

    # -- internals -----------------------------------------------------------------------
    def _set(self, state: ControlState, *, only_from: ControlState | None) -> None:
        with self._lock:
            if self._state is ControlState.STOPPING:
                return  # a stop is final
            if only_from is not None and self._state is not only_from:
                return
            self._state = state
        self._call_on_loop(self._announce)

    def _call_on_loop(self, callback: Callable[[], None]) -> None:
        with self._lock:
            loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)

    def _announce(self) -> None:
        if self._changed is not None:
            self._changed.set()
        if self._stopping is not None and self._state is ControlState.STOPPING:
            self._stopping.set()
        if self._on_change is not None:
            self._on_change(self._state)

    def _cancel_in_flight(self) -> None:
        if self._on_immediate_stop is not None:
            self._on_immediate_stop()


class SignalHandlers:
    """First Ctrl-C (or SIGTERM) stops gracefully, a second one stops at once. Main thread only."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, control: RunControl, loop: asyncio.AbstractEventLoop, notify: Callable[[str], None]) -> None:
        self._control = control
        self._loop = loop
        self._notify = notify
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> "SignalHandlers":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._loop.add_signal_handler(sig, self._handle)
                self._installed.append(sig)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in self._installed:
            self._loop.remove_signal_handler(sig)

    def _handle(self) -> None:
        if self._control.state is ControlState.STOPPING:
            self._notify("second interrupt: stopping now; tasks in flight go back to pending")
            self._control.stop(immediate=True)
        else:
            self._notify("interrupt: finishing tasks in flight, then stopping (interrupt again to stop now)")
            self._control.stop()

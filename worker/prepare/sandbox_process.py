"""The parent's handle on one render child process: start it, hand it documents, stop or kill it.

It reads the child's events with deadlines and turns every way a child can misbehave into one of
the :class:`ChildFault` exceptions below; what a fault means for the document is decided by
:mod:`worker.prepare.sandbox`. After any fault the child is dead (killed if need be) and reaped.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scriptorium.settings import PrepareSettings
from worker.prepare.sandbox_protocol import (
    MAX_EVENT_BYTES,
    ChildEvent,
    ChildStart,
    EventKind,
    ProtocolError,
    SandboxRequest,
)

CHILD_MODULE = "worker.prepare.sandbox_child"
_STDERR_TAIL_BYTES = 4096
_EXIT_GRACE_S = 5.0
# The directory that holds the ``worker`` package, so the child imports the same code as the parent.
_CODE_ROOT = Path(__file__).resolve().parents[2]


class ChildFault(Exception):
    """The child did not do what the protocol says; it has been killed and reaped."""

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


class ChildExited(ChildFault):
    """The child ended (``returncode``) while it held a document."""

    def __init__(self, returncode: int, stderr_tail: str) -> None:
        super().__init__(f"the render child ended with status {returncode}", stderr_tail)
        self.returncode = returncode


class ChildLost(ChildFault):
    """The child was gone or went away before it took the document: the document is not to blame."""


class ChildTimedOut(ChildFault):
    """The child did not answer before the deadline."""


class ChildMisbehaved(ChildFault):
    """The child wrote something the protocol does not allow."""


class RenderChild:
    """One started render child. Not thread-safe: the sandbox serialises its use."""

    def __init__(self, limits: PrepareSettings, max_documents: int) -> None:
        self.limits = limits
        self.max_documents = max_documents
        self.served = 0
        self._ready = False
        self._buffer = b""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        self._process = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_child_environment(),
        )
        self._send(ChildStart(limits=limits, max_documents=max_documents).to_json())

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def exhausted(self) -> bool:
        return self.served >= self.max_documents

    def wait_ready(self, timeout_s: float) -> None:
        if self._ready:
            return
        self._expect(EventKind.READY, 0, time.monotonic() + timeout_s, lost_if_ended=True)
        self._ready = True

    def render(self, request: SandboxRequest, timeout_s: float) -> ChildEvent:
        """Hand the child one document and wait for its ``done`` (at most ``timeout_s`` from now).

        Raises :class:`ChildLost` if the child never took the document, any other
        :class:`ChildFault` if it failed while holding it.
        """
        deadline = time.monotonic() + timeout_s
        self._stderr.seek(0)
        self._stderr.truncate()  # the file offset is shared with the child: its next write lands at 0
        try:
            self._send(request.to_json())
        except OSError:
            raise self._fail(ChildLost, "the render child was gone before it took the document") from None
        self.served += 1
        try:
            self._expect(EventKind.STARTED, request.seq, deadline, lost_if_ended=True)
        except ChildLost:
            raise
        except ChildFault as fault:
            raise ChildLost(f"before it took the document: {fault}", fault.stderr_tail) from None
        return self._expect(EventKind.DONE, request.seq, deadline, lost_if_ended=False)

    def stop(self) -> None:
        """End the child: close its stdin so it exits on its own, kill it if it does not."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._close_pipes()

    def stderr_tail(self) -> str:
        if self._stderr.closed:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - _STDERR_TAIL_BYTES))
        return self._stderr.read().decode("utf-8", errors="replace")

    def _send(self, line: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line.encode("utf-8") + b"\n")
        self._process.stdin.flush()

    def _expect(self, kind: EventKind, seq: int, deadline: float, *, lost_if_ended: bool) -> ChildEvent:
        line = self._read_line(deadline, lost_if_ended=lost_if_ended)
        try:
            event = ChildEvent.from_line(line)
        except ProtocolError as exc:
            raise self._fail(ChildMisbehaved, str(exc)) from None
        if (event.kind, event.seq) != (kind, seq):
            raise self._fail(
                ChildMisbehaved, f"expected {kind.value} {seq}, got {event.kind.value} {event.seq}"
            )
        return event

    def _read_line(self, deadline: float, *, lost_if_ended: bool) -> bytes:
        assert self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_EVENT_BYTES:
                raise self._fail(ChildMisbehaved, "an event line longer than the protocol allows")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(ChildTimedOut, "the render child did not answer in time")
            readable, _, _ = select.select([descriptor], [], [], left)
            if not readable:
                continue
            chunk = os.read(descriptor, MAX_EVENT_BYTES)
            if not chunk:
                return self._ended(lost_if_ended=lost_if_ended)
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _ended(self, *, lost_if_ended: bool) -> bytes:
        """The child closed its reply channel: it has ended, or is about to."""
        try:
            returncode = self._process.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            raise self._fail(
                ChildMisbehaved, "the render child closed its replies but kept running"
            ) from None
        tail = self.stderr_tail()
        self._close_pipes()
        if lost_if_ended:
            raise ChildLost(f"the render child ended with status {returncode} before it took work", tail)
        raise ChildExited(returncode, tail)

    def _fail(self, fault: type[ChildFault], message: str) -> ChildFault:
        tail = self.stderr_tail()
        self.kill()
        return fault(message, tail)

    def _close_pipes(self) -> None:
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):
                    pipe.close()
        if not self._stderr.closed and self._process.returncode is not None:
            self._stderr.close()


def _child_environment() -> dict[str, str]:
    """A bare environment: the child reads hostile files and has no use for the worker's secrets."""
    import_path = os.pathsep.join(filter(None, [str(_CODE_ROOT), os.environ.get("PYTHONPATH")]))
    environment = {"PYTHONPATH": import_path, "LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", os.defpath)}
    if "TMPDIR" in os.environ:
        environment["TMPDIR"] = os.environ["TMPDIR"]
    return environment

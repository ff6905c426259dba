"""Render documents in a confined child process, so that a hostile file cannot take the worker down.

A :class:`RenderSandbox` keeps one warm child (:mod:`worker.prepare.sandbox_child`) that serves
document after document, so a document pays for rendering, not for starting Python and importing
pdfium. The child runs under an address-space cap (``render_memory_mb``) and a CPU-time cap moved
forward per document; the parent adds a wall clock (``render_timeout_s``) per document. A refusal in
the child comes back as the same :class:`InputRejected`; a timeout becomes ``render_timeout``, a
child that dies, hits its memory cap or breaks the protocol becomes ``render_crashed``. After any
such fault the child is killed and replaced, and so is a child that served
``render_child_max_documents`` documents or grew too large. A child that was already gone before it
took a document (killed while idle) costs that document nothing: a fresh child takes it.

On failure ``out_dir`` may keep partial pages: the caller owns that directory.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import structlog

from scriptorium.errors import DependencyUnavailable, InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.sandbox_process import (
    ChildExited,
    ChildFault,
    ChildLost,
    ChildTimedOut,
    RenderChild,
)
from worker.prepare.sandbox_protocol import (
    EXIT_OUT_OF_MEMORY,
    ManifestError,
    RenderedPageFile,
    SandboxRequest,
    SandboxResult,
    read_manifest,
    remove_manifest,
)

__all__ = [
    "RenderSandbox",
    "RenderedPageFile",
    "SandboxResult",
    "SandboxUnavailable",
    "classify_child_exit",
    "render_document_sandboxed",
]

log = structlog.get_logger(__name__)

# Starting a child (interpreter, pdfium, Pillow, settings) takes about 0.4 s on an idle core.
CHILD_START_TIMEOUT_S = 60.0


class SandboxUnavailable(DependencyUnavailable):
    """No render child could be started or kept alive long enough to take the document.

    The document is not to blame: like any unavailable dependency, the work is tried again later
    (the claim released, the attempt refunded), never rejected.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("render_sandbox", "the render sandbox could not be started; retry later")
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class RenderSandbox:
    """One warm render child for this process, replaced after faults and after serving its quota.

    ``keep_warm`` starts the replacement as soon as a child is retired, so it imports while the
    caller does other work; without it a child is started only when a document needs one.
    """

    def __init__(
        self, limits: PrepareSettings, *, max_documents: int | None = None, keep_warm: bool = True
    ) -> None:
        self.limits = limits
        self.max_documents = max_documents or limits.render_child_max_documents
        self.keep_warm = keep_warm
        self._child: RenderChild | None = None
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()

    def __enter__(self) -> RenderSandbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def child_pid(self) -> int | None:
        """The current child's process id (None when none is running); for diagnostics and tests."""
        return None if self._child is None else self._child.pid

    def prestart(self) -> None:
        """Start the child now, without waiting for it, so the first document finds it ready."""
        with self._lock:
            self._adopt()
            if self._child is None:
                self._child = self._start_quietly()

    def render(
        self,
        path: Path,
        out_dir: Path,
        *,
        pages: Sequence[int] | None = None,
        page_selection: str | None = None,
        password: str | None = None,
    ) -> SandboxResult:
        """Render the selected pages of ``path`` into ``out_dir`` (one PNG per page) in the child.

        Select pages either as a list (``pages``) or as the client's text (``page_selection``, e.g.
        ``"1-3,5,9-"``, resolved against the page count in the child); neither means every page.
        """
        if pages is not None and page_selection is not None:
            raise ValueError("pass pages or page_selection, not both")
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_manifest(out_dir)
        with self._lock:
            self._adopt()
            child = self._hand_over(path, out_dir, pages, page_selection, password)
            try:
                return read_manifest(out_dir)
            except ManifestError as exc:
                log.warning("render_manifest_unreadable", path=str(path), error=str(exc))
                self._replace(child, "unreadable manifest")
                raise InputRejected(
                    ReasonCode.RENDER_CRASHED, "The renderer ended without reporting its result."
                ) from exc

    def close(self) -> None:
        with self._lock:
            self._adopt()
            if self._child is not None:
                self._child.stop()
                self._child = None

    def _hand_over(
        self,
        path: Path,
        out_dir: Path,
        pages: Sequence[int] | None,
        page_selection: str | None,
        password: str | None,
    ) -> RenderChild:
        """Have a child render the document; returns the child that did, which may be retired already."""
        for attempt in (1, 2):
            child = self._ready_child()
            request = SandboxRequest(
                seq=child.served + 1,
                path=path.resolve(),
                out_dir=out_dir.resolve(),
                pages=None if pages is None else list(pages),
                password=password,
                page_selection=page_selection,
            )
            try:
                done = child.render(request, self.limits.render_timeout_s)
            except ChildLost as lost:
                log.warning("render_child_lost", pid=child.pid, error=str(lost), stderr=lost.stderr_tail)
                self._replace(child, "lost before it took a document")
                if attempt == 2:
                    raise SandboxUnavailable(f"two render children in a row were lost: {lost}") from lost
                continue
            except ChildFault as fault:
                log.warning(
                    "render_child_failed",
                    path=str(path),
                    pid=child.pid,
                    error=str(fault),
                    stderr=fault.stderr_tail,
                )
                self._replace(child, type(fault).__name__)
                raise self._rejection(fault) from None
            if done.retire or child.exhausted:
                self._replace(child, f"retired after {child.served} documents", stop=True)
            return child
        raise AssertionError("unreachable")

    def _ready_child(self) -> RenderChild:
        child = self._child
        if child is not None and not child.alive:
            log.warning("render_child_gone_while_idle", pid=child.pid, stderr=child.stderr_tail())
            child.kill()
            child = self._child = None
        if child is None:
            child = self._child = self._start()
        try:
            child.wait_ready(CHILD_START_TIMEOUT_S)
        except ChildFault as fault:
            self._child = None
            raise SandboxUnavailable(
                f"the render child did not start: {fault}; {fault.stderr_tail}"
            ) from fault
        return child

    def _replace(self, child: RenderChild, why: str, *, stop: bool = False) -> None:
        if stop:
            child.stop()
        else:
            child.kill()
        (log.debug if stop else log.info)(
            "render_child_recycled", pid=child.pid, served=child.served, why=why
        )
        if self._child is child:
            self._child = self._start_quietly() if self.keep_warm else None

    def _start(self) -> RenderChild:
        try:
            return RenderChild(self.limits, self.max_documents)
        except OSError as exc:
            raise SandboxUnavailable(f"the render child could not be started: {exc}") from exc

    def _start_quietly(self) -> RenderChild | None:
        """Start a child ahead of need; a failure here surfaces when a document needs the child."""
        try:
            return self._start()
        except SandboxUnavailable as exc:
            log.warning("render_child_prestart_failed", error=str(exc))
            return None

    def _adopt(self) -> None:
        """After a fork the child belongs to the parent process: this process starts its own."""
        if os.getpid() != self._owner_pid:
            self._owner_pid = os.getpid()
            self._child = None

    def _rejection(self, fault: ChildFault) -> InputRejected:
        if isinstance(fault, ChildTimedOut):
            return InputRejected(
                ReasonCode.RENDER_TIMEOUT,
                f"Rendering took longer than {self.limits.render_timeout_s} s and was stopped.",
            )
        if isinstance(fault, ChildExited):
            return classify_child_exit(fault.returncode, self.limits)
        return InputRejected(
            ReasonCode.RENDER_CRASHED, "The renderer stopped answering properly and was replaced."
        )


def render_document_sandboxed(
    path: Path,
    out_dir: Path,
    limits: PrepareSettings,
    *,
    pages: Sequence[int] | None = None,
    page_selection: str | None = None,
    password: str | None = None,
) -> SandboxResult:
    """Render one document in a child started for it alone (see :meth:`RenderSandbox.render`).

    For one-off use; a worker keeps a :class:`RenderSandbox` and saves the start-up per document.
    """
    with RenderSandbox(limits, max_documents=1, keep_warm=False) as sandbox:
        return sandbox.render(path, out_dir, pages=pages, page_selection=page_selection, password=password)


def classify_child_exit(returncode: int, limits: PrepareSettings) -> InputRejected:
    """The failure a child that ended with ``returncode`` while holding a document stands for."""
    if returncode == EXIT_OUT_OF_MEMORY:
        return InputRejected(
            ReasonCode.RENDER_CRASHED,
            f"Rendering needed more than its memory limit of {limits.render_memory_mb:,} MiB.",
        )
    if returncode == -signal.SIGXCPU:
        return InputRejected(
            ReasonCode.RENDER_TIMEOUT,
            f"Rendering used more than {limits.render_timeout_s} s of CPU time and was stopped.",
        )
    if returncode < 0:
        return InputRejected(
            ReasonCode.RENDER_CRASHED,
            f"The renderer crashed on this document ({_signal_name(-returncode)}).",
        )
    return InputRejected(
        ReasonCode.RENDER_CRASHED, f"The renderer failed on this document (exit status {returncode})."
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

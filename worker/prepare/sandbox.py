"""Render a document in a confined child process, so that a hostile file cannot take the worker down.

The child (:mod:`worker.prepare.sandbox_child`) runs under an address-space cap (``render_memory_mb``)
and a CPU-time cap; the parent adds a wall clock (``render_timeout_s``, for the whole call). A refusal
in the child comes back as the same :class:`InputRejected`; a timeout becomes ``render_timeout`` and
a child that dies becomes ``render_crashed``. On failure ``out_dir`` may keep partial pages: the
caller owns that directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import structlog

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.sandbox_protocol import (
    EXIT_OUT_OF_MEMORY,
    ManifestError,
    RenderedPageFile,
    SandboxRequest,
    SandboxResult,
    read_manifest,
    remove_manifest,
)

__all__ = ["RenderedPageFile", "SandboxResult", "classify_child_exit", "render_document_sandboxed"]

log = structlog.get_logger(__name__)

CHILD_MODULE = "worker.prepare.sandbox_child"
_STDERR_TAIL_BYTES = 4096
# The directory that holds the ``worker`` package, so the child imports the same code as the parent.
_CODE_ROOT = Path(__file__).resolve().parents[2]


def render_document_sandboxed(
    path: Path,
    out_dir: Path,
    limits: PrepareSettings,
    *,
    pages: Sequence[int] | None = None,
    page_selection: str | None = None,
    password: str | None = None,
) -> SandboxResult:
    """Render the selected pages of ``path`` into ``out_dir`` (one PNG per page) in a confined child.

    Select pages either as a list (``pages``) or as the client's text (``page_selection``, e.g.
    ``"1-3,5,9-"``, resolved against the page count in the child); neither means every page.
    """
    if pages is not None and page_selection is not None:
        raise ValueError("pass pages or page_selection, not both")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_manifest(out_dir)
    request = SandboxRequest(
        path=path.resolve(),
        out_dir=out_dir.resolve(),
        limits=limits,
        pages=None if pages is None else list(pages),
        password=password,
        page_selection=page_selection,
    )
    with tempfile.TemporaryFile() as stderr:
        try:
            completed = subprocess.run(
                [sys.executable, "-X", "faulthandler", "-m", CHILD_MODULE],
                input=request.to_json().encode("utf-8"),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_child_environment(),
                timeout=limits.render_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.warning("render_timeout", path=str(path), timeout_s=limits.render_timeout_s)
            raise InputRejected(
                ReasonCode.RENDER_TIMEOUT,
                f"Rendering took longer than {limits.render_timeout_s} s and was stopped.",
            ) from None
        if completed.returncode != 0:
            log.warning(
                "render_child_failed", path=str(path), returncode=completed.returncode, stderr=_tail(stderr)
            )
            raise classify_child_exit(completed.returncode, limits)
    try:
        return read_manifest(out_dir)
    except ManifestError as exc:
        log.warning("render_manifest_unreadable", path=str(path), error=str(exc))
        raise InputRejected(
            ReasonCode.RENDER_CRASHED, "The renderer ended without reporting its result."
        ) from exc


def classify_child_exit(returncode: int, limits: PrepareSettings) -> InputRejected:
    """The failure a child that ended with ``returncode`` (non-zero) stands for."""
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


def _child_environment() -> dict[str, str]:
    """A bare environment: the child reads hostile files and has no use for the worker's secrets."""
    import_path = os.pathsep.join(filter(None, [str(_CODE_ROOT), os.environ.get("PYTHONPATH")]))
    environment = {"PYTHONPATH": import_path, "LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", os.defpath)}
    if "TMPDIR" in os.environ:
        environment["TMPDIR"] = os.environ["TMPDIR"]
    return environment


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - _STDERR_TAIL_BYTES))
    return stream.read().decode("utf-8", errors="replace")

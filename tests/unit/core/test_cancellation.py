"""SIGTERM in a pool process: TaskCancelled inside a cancellable task, the usual meaning outside."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from scriptorium.errors import DependencyUnavailable
from worker.cancellation import TaskCancelled
from worker.task_base import is_transient

PROCESS = textwrap.dedent(
    """
    import os, signal, sys, time
    from worker import cancellation

    with cancellation.cancellable():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
            print("not cancelled", flush=True)
        except cancellation.TaskCancelled:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one while cleaning up is ignored
            time.sleep(0.2)
            print("cleaned up", flush=True)
    {after}
    """
)


def _run(after: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROCESS.format(after=after)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_sigterm_inside_a_cancellable_task_raises_there_once_and_the_process_lives_on() -> None:
    finished = _run("print('alive', flush=True)")
    assert finished.stdout.split() == ["cleaned", "up", "alive"], finished.stderr
    assert finished.returncode == 0


def test_after_the_task_sigterm_has_its_previous_meaning_again() -> None:
    finished = _run("os.kill(os.getpid(), signal.SIGTERM); time.sleep(10); print('survived', flush=True)")
    assert "survived" not in finished.stdout
    assert finished.returncode == -signal.SIGTERM


def test_a_cancelled_task_is_an_outage_not_the_works_fault() -> None:
    error = TaskCancelled()
    assert isinstance(error, DependencyUnavailable)
    assert is_transient(error) and error.code == "task_cancelled"

"""The warm render child, run for real: one child serves many documents, and every fault replaces it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from tests.unit.prepare.test_bad_input_corpus import HUGEMONO, REFUSED, RENDERED
from worker.prepare import sandbox_process
from worker.prepare.sandbox import RenderSandbox, SandboxUnavailable

GOOD = "crazyones.pdf"  # one page, renders in a few tens of milliseconds
FOUR_HUNDRED_PAGES = "huge/pdf2image-memory-error-test-400p.pdf"


class Documents:
    """Renders through one sandbox, each document into a directory of its own."""

    def __init__(self, sandbox: RenderSandbox, pdf_real: Path, bad_input: Path, out_root: Path) -> None:
        self.sandbox = sandbox
        self.pdf_real = pdf_real
        self.bad_input = bad_input
        self._out_root = out_root
        self._count = 0

    def good(self) -> int:
        result = self.sandbox.render(self.pdf_real / GOOD, self._next_dir())
        assert [page.page_no for page in result.pages] == [1]
        assert result.pages[0].path.stat().st_size > 0
        return result.info.page_count

    def refused(self, name: str) -> ReasonCode:
        with pytest.raises(InputRejected) as caught:
            self.sandbox.render(self.bad_input / name, self._next_dir())
        return caught.value.reason

    def _next_dir(self) -> Path:
        self._count += 1
        return self._out_root / f"document-{self._count}"


@pytest.fixture
def sandboxes() -> Iterator[list[RenderSandbox]]:
    made: list[RenderSandbox] = []
    yield made
    for sandbox in made:
        sandbox.close()


def _documents(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path, **limits: int
) -> Documents:
    sandbox = RenderSandbox(PrepareSettings(**limits))
    sandboxes.append(sandbox)
    return Documents(sandbox, pdf_real, bad_input, tmp_path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(sandbox: RenderSandbox) -> int:
    pid = sandbox.child_pid
    assert pid is not None
    return pid


def test_one_child_serves_many_documents(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.good()
    first = _pid(documents.sandbox)

    for _ in range(4):
        documents.good()
        assert documents.sandbox.child_pid == first
    assert _running(first)


def test_the_child_is_replaced_after_its_quota_of_documents(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path, render_child_max_documents=2)
    documents.good()
    first = _pid(documents.sandbox)
    documents.good()
    second = _pid(documents.sandbox)  # started as soon as the first retired
    documents.good()
    documents.good()
    third = _pid(documents.sandbox)

    assert len({first, second, third}) == 3
    assert not _running(first) and not _running(second)  # retired and reaped, not left as zombies


def test_bad_inputs_between_good_ones_are_refused_by_the_same_child(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.good()
    child = _pid(documents.sandbox)

    assert documents.refused("malformed/invalid.pdf") is ReasonCode.CORRUPT
    documents.good()
    assert documents.refused("encrypted/r6-user-password.pdf") is ReasonCode.ENCRYPTED
    assert documents.refused("malformed/empty.pdf") is ReasonCode.EMPTY
    assert documents.refused("odd/small_page_size.tests.jsonl") is ReasonCode.UNSUPPORTED_TYPE
    documents.good()

    assert documents.sandbox.child_pid == child  # a refusal is an answer, not a fault


def test_a_timeout_replaces_the_child_and_the_next_document_is_served(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path, render_timeout_s=1)
    documents.good()
    stuck = _pid(documents.sandbox)

    started = time.monotonic()
    assert documents.refused(FOUR_HUNDRED_PAGES) is ReasonCode.RENDER_TIMEOUT
    assert time.monotonic() - started < 10

    assert not _running(stuck)
    documents.good()
    assert documents.sandbox.child_pid != stuck


def test_the_wall_clock_starts_again_for_each_document_and_cpu_adds_up_only_per_document(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path, render_timeout_s=1)
    documents.good()
    child = _pid(documents.sandbox)
    time.sleep(1.5)  # longer than one document may take, idle: it must not count
    cpu_started = time.process_time()
    for _ in range(40):  # together far more CPU than one document's 1 s (+1) allows
        documents.sandbox.render(pdf_real / "code_and_formula.pdf", tmp_path / "again")

    assert documents.sandbox.child_pid == child
    assert time.process_time() - cpu_started < 5  # the child worked, not this process
    with open(f"/proc/{child}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    child_cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    assert child_cpu_s > 2


CPU_CAP_SCRIPT = """
import sys, time
from scriptorium.settings import PrepareSettings
from worker.prepare.sandbox_child import allow_cpu_seconds, confine

def burn(seconds):
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass

confine(PrepareSettings(render_timeout_s=1), 10)
for document in (1, 2):
    allow_cpu_seconds(2)
    burn(1.2)
    print("document", document, "done", flush=True)
allow_cpu_seconds(2)
burn(60)
print("never", flush=True)
"""


def test_the_cpu_cap_is_per_document_and_ends_a_runaway_child() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CPU_CAP_SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )

    assert completed.returncode == -signal.SIGXCPU
    assert completed.stdout.split("\n")[:2] == ["document 1 done", "document 2 done"]
    assert "never" not in completed.stdout


def test_a_child_over_its_memory_cap_is_replaced(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path, render_memory_mb=256)
    documents.good()
    child = _pid(documents.sandbox)

    assert documents.refused("huge/poster.pdf") is ReasonCode.RENDER_CRASHED  # ~78 MB of pixels, twice

    documents.good()
    assert documents.sandbox.child_pid != child


def test_a_child_killed_while_idle_costs_the_next_document_nothing(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.good()
    killed = _pid(documents.sandbox)
    os.kill(killed, signal.SIGKILL)
    time.sleep(0.2)

    documents.good()
    assert documents.sandbox.child_pid != killed


def test_a_child_killed_mid_document_fails_that_document_only(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.good()
    child = _pid(documents.sandbox)
    outcome: list[BaseException] = []

    def render_long() -> None:
        try:
            documents.sandbox.render(bad_input / FOUR_HUNDRED_PAGES, tmp_path / "long")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=render_long)
    worker.start()
    deadline = time.monotonic() + 20
    while not list((tmp_path / "long").glob("page-*.png")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child, signal.SIGKILL)
    worker.join(timeout=30)

    assert len(outcome) == 1 and isinstance(outcome[0], InputRejected)
    assert outcome[0].reason is ReasonCode.RENDER_CRASHED
    assert "SIGKILL" in outcome[0].message
    documents.good()
    assert documents.sandbox.child_pid != child


def test_a_frozen_idle_child_is_replaced_and_the_document_served_by_the_next(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path, render_timeout_s=2)
    documents.good()
    frozen = _pid(documents.sandbox)
    os.kill(frozen, signal.SIGSTOP)  # alive but answering nothing, as a child stuck in a system call

    documents.good()  # it never took the document, so the document is not to blame

    assert not _running(frozen)
    assert documents.sandbox.child_pid != frozen


@pytest.mark.parametrize("behaviour", [2, 3], ids=["garbage", "wrong-document"])
def test_a_child_that_breaks_the_protocol_fails_the_document_and_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
    sandboxes: list[RenderSandbox],
    pdf_real: Path,
    tmp_path: Path,
    behaviour: int,
) -> None:
    monkeypatch.setattr(sandbox_process, "CHILD_MODULE", "tests.unit.prepare.misbehaving_render_child")
    sandbox = RenderSandbox(PrepareSettings(dpi=behaviour), keep_warm=False)
    sandboxes.append(sandbox)

    with pytest.raises(InputRejected) as caught:
        sandbox.render(pdf_real / GOOD, tmp_path / "out")

    assert caught.value.reason is ReasonCode.RENDER_CRASHED
    assert "stopped answering properly" in caught.value.message
    assert sandbox.child_pid is None


def test_a_child_that_cannot_start_is_not_blamed_on_the_document(
    monkeypatch: pytest.MonkeyPatch, sandboxes: list[RenderSandbox], pdf_real: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(sandbox_process, "CHILD_MODULE", "tests.unit.prepare.misbehaving_render_child")
    sandbox = RenderSandbox(PrepareSettings(dpi=1))
    sandboxes.append(sandbox)

    with pytest.raises(SandboxUnavailable) as caught:
        sandbox.render(pdf_real / GOOD, tmp_path / "out")

    assert caught.value.transient  # tried again later, the attempt refunded; never a rejection
    assert "did not start" in str(caught.value)


def test_closing_the_sandbox_ends_its_child(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.good()
    child = _pid(documents.sandbox)

    documents.sandbox.close()

    assert documents.sandbox.child_pid is None
    assert not _running(child)


def test_a_prestarted_child_serves_the_first_document(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.sandbox.prestart()
    prestarted = _pid(documents.sandbox)

    documents.good()

    assert documents.sandbox.child_pid == prestarted


def test_the_whole_robustness_corpus_through_one_warm_child(
    sandboxes: list[RenderSandbox], pdf_real: Path, bad_input: Path, tmp_path: Path
) -> None:
    """Every bad-input file, first page only, each followed by a good document, in one sandbox:
    refusals keep their reason codes, odd files render at their size, and no refusal costs a child."""
    documents = _documents(sandboxes, pdf_real, bad_input, tmp_path)
    documents.good()
    child = _pid(documents.sandbox)
    for number, name in enumerate([*sorted(REFUSED), *sorted(RENDERED), HUGEMONO]):
        out_dir = tmp_path / f"corpus-{number}"
        if name in REFUSED:
            with pytest.raises(InputRejected) as caught:
                documents.sandbox.render(bad_input / name, out_dir, pages=[1])
            assert caught.value.reason is REFUSED[name], name
        else:
            result = documents.sandbox.render(bad_input / name, out_dir, pages=[1])
            page = result.pages[0]
            expected = (6300, 6300) if name == HUGEMONO else RENDERED[name][2]
            assert (page.width, page.height) == expected, name
        documents.good()

    assert documents.sandbox.child_pid == child

from scriptorium.states import DocumentState, EventType, PageState, document_outcome


def test_all_read_or_blank_is_completed() -> None:
    assert document_outcome([PageState.DONE, PageState.SKIPPED]) is DocumentState.COMPLETED


def test_some_failed_is_partial() -> None:
    assert document_outcome([PageState.DONE, PageState.DEAD]) is DocumentState.PARTIAL


def test_nothing_read_is_failed() -> None:
    assert document_outcome([PageState.FAILED, PageState.DEAD]) is DocumentState.FAILED
    assert document_outcome([]) is DocumentState.FAILED


def test_event_types_follow_terminal_states() -> None:
    assert EventType.for_document(DocumentState.PARTIAL) is EventType.DOCUMENT_PARTIAL

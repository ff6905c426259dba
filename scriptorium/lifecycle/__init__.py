"""State transitions of documents and pages, as guarded SQL.

Celery delivers at least once, so every transition is conditional: a claim succeeds only for a
claimable row (:mod:`.claims`), a result is written only under the lease that claimed the page
(:mod:`.recording`), and a document becomes terminal in exactly one transaction, the one that
finds no unfinished page while holding the document row lock (:mod:`.documents`). The periodic
repair of what crashes leave behind is :mod:`.sweeping`. Lock order is always page rows, then the
tenant's usage row, then document rows by id, then the batch row.

Nothing here commits or publishes: functions change rows in the caller's unit of work and
register the messages those changes call for in its outbox.
"""

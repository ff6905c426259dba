"""Batches and watched prefixes: many inputs (an archive, a bucket prefix, a manifest, client uploads)
turned into documents, tracked as one unit, reconciled input by input.

Modules import nothing from this package's ``__init__``; ``completion`` is imported by
:mod:`scriptorium.lifecycle` and so must not import it back.
"""

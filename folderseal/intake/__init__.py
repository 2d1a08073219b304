"""Intake: from a file dropped into an inbox to claimed files grouped into batches.

In the order a file meets them: ``folder`` is the per-folder driver the daemon steps;
``attach`` keeps the inbox and work folder in reach, ``limits`` says whether claims may
go on; ``watch`` (with ``mounts``) hints, ``scanning`` (with ``inbox`` and ``ignore``)
finds files; ``settle`` (with ``complete``) decides when one is ready; ``claim`` takes
it (``fragments`` notices a writer that paused); ``batching`` groups claims into batches.
"""

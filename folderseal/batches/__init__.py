"""Batches: the state machine that drives each batch through its provider's lifecycle.

``machine`` knows each state and the step that follows it; the steps live by phase in
``send`` (before accept), ``accept`` and ``creates`` (the point of no return), ``poll``
and ``deliver``, each with a ``context`` (the store, the provider, the batch's ``views``
and its ``ledger``). ``lifecycle`` says what a state means for the files; ``backoff``
is the retry policy.
"""

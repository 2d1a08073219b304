"""Publishing: results and sidecars into the outbox, failures and their records into
errors, and the looks at those folders made off the intake thread (``probe``).
"""

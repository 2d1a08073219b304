"""Publishing: results and sidecars into the outbox, failures and their records into
errors, with durable file operations and path safety.
"""

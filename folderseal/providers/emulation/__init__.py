"""What every provider's emulator shares: HTTP, routing and request faults,
the fault spec, the journal, the runner, request bodies in chunks.
"""

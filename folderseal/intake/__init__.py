"""Intake: from a file dropped into an inbox to claimed files grouped into batches.
Watch, settle, claim, batch, in the order a file meets them.
"""

"""Jobs: the state machine that drives each batch through its provider's lifecycle.
"""

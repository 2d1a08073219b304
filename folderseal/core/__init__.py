"""The bottom layer: data types, errors, configuration, logs, redaction, crash points
and metric definitions. Every other layer may use it; it uses no other layer.
"""

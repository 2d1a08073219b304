"""The bottom layer: data types, errors, configuration, logs, redaction, crash points,
metric definitions, and what every layer does with files — durable file operations
(``files``), path safety and safe names (``safety``), which filesystem a path is on
(``mounts``) and the state folder's lock (``statelock``). Every other layer may use it;
it uses no other layer.
"""

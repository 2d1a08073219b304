"""The ``centrapay`` provider: each dropped file loaded into a Centrapay account as a batch.

Its local emulator is :mod:`.emulator` (``folderseal emulate centrapay``).
"""

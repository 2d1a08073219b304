"""The reliability campaign behind ``bench/torture.py``.

``world``      a folderseal installation in a temp folder: config, the SEAL emulator,
               the daemon as a subprocess (killed with SIGKILL when a scenario says),
               and a feeder that drops uniquely numbered files the whole time;
``checks``     the invariants every scenario ends with;
``scenarios``  crash, provider chaos, share outage, full disk, hostile input, lost state.
"""

"""The service install proven under a real systemd: ``tests/system/nspawn.py`` boots a
Debian bookworm container with systemd-nspawn, installs folderseal as the README's
service block says, and checks what the service promises."""

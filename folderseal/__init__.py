"""folderseal: watched folders in, sealed files and proof records out."""

__version__ = "0.1.0"

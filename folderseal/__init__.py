"""folderseal: watched folders in, sealed files and proof records out."""

import warnings

__version__ = "0.1.0"

# Recent cryptography releases warn, on stderr, whenever their DSA key type is touched:
# pyHanko does at import, and folderseal still accepts a DSA seal. The warning is for
# library authors, not operators, and an unlevelled stderr line would break the daemon's
# journald levels.
warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning)

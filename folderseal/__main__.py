"""``python -m folderseal`` runs the command line."""

import sys

from folderseal.commands import main

if __name__ == "__main__":
    sys.exit(main())

"""Kept for old instructions: the prefetcher is `python -m minifreeze.prefetch` (minifreeze/prefetch.py),
so that an installed package has it too."""

import sys

from minifreeze.prefetch import main

if __name__ == "__main__":
    sys.exit(main())

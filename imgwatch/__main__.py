"""`python -m imgwatch` is the same as the `imgwatch` console script."""

import sys

from imgwatch.cli import main

# Guarded: a process started from a fork server imports this module again (as
# __mp_main__), and must not run the command line there.
if __name__ == "__main__":
    sys.exit(main())

"""`python -m imgwatch` is the same as the `imgwatch` console script."""

import sys

from imgwatch.cli import main

sys.exit(main())

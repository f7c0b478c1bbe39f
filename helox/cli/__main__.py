"""`python -m helox.cli`, as the `helox` command."""

import sys

from helox.cli.main import main

sys.exit(main())

"""``python -m featurekit``: the command line."""

import sys

from featurekit.cli import main

sys.exit(main())

"""`python -m device.updater`: the same as `tinylcm updater`."""

import sys

from device.updater.cli import main

sys.exit(main())

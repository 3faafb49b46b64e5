import sys

from device.simulator.cli import main

sys.exit(main())

"""`python3 -m ec2net` runs the command line tool."""

import sys

from .entry import main

sys.exit(main())

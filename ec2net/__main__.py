"""`python3 -m ec2net` runs the command line tool."""

import sys

from .cli import main

sys.exit(main())

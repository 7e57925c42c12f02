import sys

from ssp.cli import main

sys.exit(main())

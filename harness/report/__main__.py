"""python -m harness.report --help"""

import sys

from harness.report.cli import main

if __name__ == "__main__":
    sys.exit(main())

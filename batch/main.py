"""Entry file for `spark-submit batch/main.py --input ... --output ...` (same flags as python -m batch)."""

import sys

from batch.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m batch`: run the job."""

import sys

from batch.cli import main

sys.exit(main())

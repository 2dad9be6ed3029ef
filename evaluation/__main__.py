"""`python -m evaluation --bundle ROOT --data LABELLED_PHOTOS`: print the table, write JSON."""

import sys

from evaluation.evaluate import main

sys.exit(main())

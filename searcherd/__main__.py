"""`python -m searcherd`: the same as the `searcherd` command."""

import sys

from searcherd.cli import main

sys.exit(main())

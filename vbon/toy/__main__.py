"""``python -m vbon.toy WORLD``: build one toy world (used for parallel builds)."""

import sys

from vbon.toy.build import main

sys.exit(main())

"""``python -m rsanet.cli`` (what ``torchrun -m rsanet.cli train ...`` runs)."""

import sys

from rsanet.cli import main

sys.exit(main())

import sys

from rsanet.cli import main

sys.exit(main())

import sys

from hetload.cli import main

sys.exit(main())

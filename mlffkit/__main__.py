import sys

from mlffkit.cli import main

sys.exit(main())

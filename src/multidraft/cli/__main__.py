import sys

from multidraft.cli import main

sys.exit(main())

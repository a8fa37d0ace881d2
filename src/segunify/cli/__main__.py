import sys

from segunify.cli import main

sys.exit(main())

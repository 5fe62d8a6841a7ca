import sys

from nlft.cli import main

sys.exit(main())

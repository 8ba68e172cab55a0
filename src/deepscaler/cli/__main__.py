import sys

from deepscaler.cli import main

sys.exit(main())

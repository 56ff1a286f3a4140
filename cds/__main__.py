import sys

from cds.cli.main import main

sys.exit(main())

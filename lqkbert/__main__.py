import sys

from lqkbert.cli import main


sys.exit(main())

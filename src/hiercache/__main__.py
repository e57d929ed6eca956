import sys

from hiercache.cli import main

sys.exit(main())

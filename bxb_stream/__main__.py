import sys

from bxb_stream.cli import main

sys.exit(main())

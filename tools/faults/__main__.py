import sys

from tools.faults.run import main

sys.exit(main())

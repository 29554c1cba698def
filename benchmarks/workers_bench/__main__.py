import sys

from benchmarks.workers_bench.main import main

sys.exit(main())

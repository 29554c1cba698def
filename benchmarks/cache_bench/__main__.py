import sys

from benchmarks.cache_bench.main import main

sys.exit(main())

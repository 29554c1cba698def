import sys

from benchmarks.serve_bench.main import main

sys.exit(main())

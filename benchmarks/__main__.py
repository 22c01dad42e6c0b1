"""``python -m benchmarks``: the benchmark runner (see benchmarks/README.md)."""

import sys

from benchmarks.runner import main

sys.exit(main(sys.argv[1:]))

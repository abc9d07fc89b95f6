"""eyefast benchmarks: `python -m benchmarks.run` prints the comparison table."""

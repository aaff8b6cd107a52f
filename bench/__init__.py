"""natsmesh benchmarks: `python -m bench [--quick]`."""

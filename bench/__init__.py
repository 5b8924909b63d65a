"""The benchmark suite: quality and speed measurements that are too slow for `make test`.

Each module runs on its own (`python -m bench.<name>`, or its `make bench-*` target), prints
its numbers and records them in BENCHMARKS.md. Nothing here is imported by the package.
"""

"""Tools around the runtime: the demo data generators and the benchmark.

Used by `make demo`, `make bench` and the tests, never by the nightly DAG.
"""

"""The nightly-run benchmark (issue 7): `python -m tools.bench --scale <clients>`.

Modules: runner (the steps of one run), measure (reading what the pipeline
recorded, the raw COPY limit, profiles), memory (peak RSS of the process
tree), report (targets, markdown, docs/benchmarks.md), cli (arguments).
"""

"""`make bench`'s harness (issue #11): wrk loads, CPU and memory of every process from /proc, the
reference servers of the same run (`ref-http`, `ref-grpc`), the monolith kit, the report and the
targets. The scenarios themselves are the `e2e/bench_*.py` files; results go to `bench/results/`.
"""

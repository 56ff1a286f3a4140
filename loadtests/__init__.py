"""Load-test and benchmark tooling: the deterministic India-wide network generator (`loadtests.generator`),
locustfiles and the benchmark runner. Nothing here is imported by the service itself."""

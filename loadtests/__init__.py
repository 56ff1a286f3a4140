"""Load-test and benchmark tooling: locustfiles, the benchmark runner, a mock BPP and a hello-world baseline.
The network they load comes from `cds.demo.generator`. Nothing here is imported by the service itself."""

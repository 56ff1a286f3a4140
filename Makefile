# `make` alone lists the targets (nothing long runs by accident). The README's two commands are `make demo`
# and `make test`; the benchmarks are in BENCHMARKS.md.
.DEFAULT_GOAL := help
.PHONY: help demo test bench bench-smoke

# the benchmarks drive the CDS with locust (the [load] extra); installed on first use
LOAD_DEPS = @.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('locust') is None)" || .venv/bin/pip install -q -e ".[load]"

help:  ## list the targets
	@echo "make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 16

demo:  ## install (first run) and start the CDS with a demo network: scripts/demo.sh
	bash scripts/demo.sh

test:  ## install everything and run the whole suite (5-10 min): scripts/test.sh
	bash scripts/test.sh

bench:  ## the full benchmark (minutes; BENCH_ARGS passes options): python -m loadtests.bench
	$(LOAD_DEPS)
	.venv/bin/python -m loadtests.bench $(BENCH_ARGS)

bench-smoke:  ## a quick benchmark (~1k connectors, seconds per scenario); exit 1 on any request error
	$(LOAD_DEPS)
	.venv/bin/python -m loadtests.bench --smoke $(BENCH_ARGS)

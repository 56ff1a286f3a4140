.PHONY: test demo bench
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	@.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('locust') is None)" || .venv/bin/pip install -q -e ".[load]"
	.venv/bin/python -m loadtests.bench $(BENCH_ARGS)
bench-smoke:
	@.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('locust') is None)" || .venv/bin/pip install -q -e ".[load]"
	.venv/bin/python -m loadtests.bench --smoke $(BENCH_ARGS)

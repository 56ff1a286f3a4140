.PHONY: test demo bench
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh

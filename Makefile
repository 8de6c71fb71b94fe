# The two commands of the README: `make run` and `make test`.
# uv comes from PyPI when the machine lacks it; `python3 -m uv` then finds it.
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: run test lint bench setup

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen

run: setup
	$(UV) run python manage.py rundashboard

test: setup
	$(UV) run ./scripts/test

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

bench: setup
	$(UV) run python bench/run_all.py

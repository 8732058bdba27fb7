# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# torch first, by its pin: pip takes the local CPU wheel instead of a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,metrics]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bertforge demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/encode.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

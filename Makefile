# finsent — the two commands: `make demo` (main job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo bench export clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,stream,api,dashboards,dev]"
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

demo: setup
	$(PY) -m finsent.cli demo

bench: setup
	$(PY) bench/model.py

export: setup
	$(PY) -m finsent.cli export

clean:
	rm -rf $(VENV) var build *.egg-info

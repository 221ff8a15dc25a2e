# Every target sets up what it needs on a fresh machine: a virtual environment with the CPU build of torch 2.13.0
# (a bare `torch` requirement would pull a CUDA build of several GB) and this package with its test extras.

PYTHON ?= python3
VENV ?= .venv
COMPAT_VENV ?= .venv-compat
TORCH_SPEC ?= torch==2.13.0
PIP_FLAGS ?= --quiet --disable-pip-version-check
PYTEST_FLAGS ?=

.PHONY: venv venv-compat test test-compat demo clean

venv: $(VENV)/.installed
venv-compat: $(COMPAT_VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/transformers-5.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(VENV)/bin/pip install $(PIP_FLAGS) -c requirements/transformers-5.txt -e ".[dev]"
	touch $@

$(COMPAT_VENV)/.installed: pyproject.toml requirements/transformers-4.57.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(COMPAT_VENV)/bin/pip install $(PIP_FLAGS) -c requirements/transformers-4.57.txt -e ".[dev]"
	touch $@

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_FLAGS)

test-compat: venv-compat
	$(COMPAT_VENV)/bin/python -m pytest $(PYTEST_FLAGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build

# Every target sets up what it needs on a fresh machine: a virtual environment with the CPU build of torch 2.13.0
# (a bare `torch` requirement would pull a CUDA build of several GB) and this package with its test extras.

PYTHON ?= python3
VENV ?= .venv
COMPAT_VENV ?= .venv-compat
TORCH_SPEC ?= torch==2.13.0
PIP_FLAGS ?= --quiet --disable-pip-version-check
PYTEST_FLAGS ?=

.PHONY: venv venv-compat test test-compat demo demo-clean clean

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

# The demo: without network access klue/bert-base cannot be downloaded, so it pre-trains a small encoder on the corpus
# (build/demo-base), fine-tunes it (build/demo-model), evaluates it on the test split and runs the model card's code
# against it. A second run reuses the trained folders. `make demo BASE_MODEL=PATH` fine-tunes a real BERT checkpoint
# instead, into build/finetuned-<name of PATH>.
BASE_MODEL ?=
DEMO_EPOCHS ?= 12
DEMO_MLM_EPOCHS ?= 15
DEMO_BASE := build/demo-base
ifeq ($(BASE_MODEL),)
DEMO_MODEL := build/demo-model
DEMO_BASE_MODEL := $(DEMO_BASE)
DEMO_BASE_DEPENDENCY := $(DEMO_BASE)/config.json
else
DEMO_MODEL := build/finetuned-$(notdir $(patsubst %/,%,$(BASE_MODEL)))
DEMO_BASE_MODEL := $(BASE_MODEL)
DEMO_BASE_DEPENDENCY :=
endif

$(DEMO_BASE)/config.json: data/train.jsonl | venv
	$(VENV)/bin/python -m lqkbert.demo base --output-dir $(DEMO_BASE) --mlm-epochs $(DEMO_MLM_EPOCHS)

$(DEMO_MODEL)/model.safetensors: $(DEMO_BASE_DEPENDENCY) data/train.jsonl data/dev.jsonl | venv
	$(VENV)/bin/python -m lqkbert train \
		--base_model $(DEMO_BASE_MODEL) \
		--train_file data/train.jsonl \
		--validation_file data/dev.jsonl \
		--output_dir $(DEMO_MODEL) \
		--num_train_epochs $(DEMO_EPOCHS) \
		--per_device_train_batch_size 32 \
		--per_device_eval_batch_size 64 \
		--learning_rate 1e-4 \
		--warmup_steps 50 \
		--weight_decay 0.01 \
		--seed 42 \
		--training_data_description "The project corpus in data/ (data/README.md): Korean crypto-market sentences written and labeled for this project. It is small and is not the 100k-sentence production set of the published weights."

demo: venv $(DEMO_MODEL)/model.safetensors
	$(VENV)/bin/python -m lqkbert evaluate --model $(DEMO_MODEL) --data data/test.jsonl \
		--output-dir build/demo-eval --update-model-card
	$(VENV)/bin/python -m lqkbert.demo examples --model $(DEMO_MODEL)

demo-clean:
	rm -rf build/demo-base build/demo-model build/demo-model-checkpoints build/demo-eval

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build

# Two entry points that work from a clean clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean vllm-env slurm graders

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so the package's torch>=2.9 is already satisfied (no CUDA download).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,hf,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lingcoder recipe configs/tiny.toml

test: $(STAMP)
	$(BIN)/pytest -q

# vLLM's CPU build in its own environment (.venv-vllm): the vLLM tests, `serve --engine vllm`, `eval --backend vllm`.
vllm-env:
	PY=$(PY) bash .ci/vllm-env

# A single-node Slurm cluster on 127.0.0.1 (root, Debian): the Slurm executor's test.
slurm:
	bash .ci/start-slurm

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .venv-vllm .venv-graders runs

# The benchmarks' own graders (bigcodebench, nvidia-livecodebench) for the grader-parity tests.
graders:
	./.ci/graders-env

# Every target bootstraps its own virtualenv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv test test-fast wheel-check demo lint bench bench-m4max bench-m3pro-36gb bench-m2-16gb bench-overhead \
	bench-methods bench-sweep bench-serve bench-engines bench-distributed clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

venv: $(STAMP)

## make test: the whole suite, slow real-model tests included (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make test-fast: skip the slow real-model tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

## make wheel-check: build the wheel, install it (not editable) into a fresh venv outside the checkout and run
## mlxdraft from there (models of every bundled family, a report); .ci/run calls it after the tests
wheel-check:
	bash scripts/wheel_check.sh $(PYTHON)

## make demo: the main job, offline: a real smart sweep on SmolLM2-135M (fp16 target; 8-bit and 4-bit drafts;
## k = 2 and 4; mlx-lm's loop and mlxdraft's own; 12 short answers): the table, a verdict on end-to-end time
## and its reason, and an HTML report
DEMO_RESULTS := results/demo-smollm2.json
demo: $(STAMP)
	$(BIN)/mlxdraft sweep --family smollm2 --target-precisions fp16 --draft-precisions 8bit,4bit \
		-k 2,4 --methods mlx-lm,draft --max-tokens 16 --prompts scripts/demo_prompts.jsonl \
		-o $(DEMO_RESULTS) --force
	$(BIN)/mlxdraft report $(DEMO_RESULTS) --format html -o results/demo-smollm2.html

## Presets: one mechanism, a memory budget per machine. Results go to results/<preset>-<family>.json/.md
## and a stopped run continues where it left off.
BENCH_FAMILIES ?= qwen2.5 llama3
BENCH_STRATEGY ?= smart
BENCH_FILTERS ?= --target-sizes 7b,8b,32b,70b,72b --target-precisions 4bit,8bit \
	--draft-sizes 0.5b,1b,1.5b,3b --draft-precisions 4bit -k 2,3,4,6 -r 1
bench-m4max:
	$(MAKE) bench BENCH_NAME=m4max BENCH_MEMORY_GB=128
bench-m3pro-36gb:
	$(MAKE) bench BENCH_NAME=m3pro-36gb BENCH_MEMORY_GB=36
bench-m2-16gb:
	$(MAKE) bench BENCH_NAME=m2-16gb BENCH_MEMORY_GB=16
# Each family is swept even when an earlier one had failures; the exit status is non-zero at the end
# if any family failed (exit 3 of a sweep: some pairs failed, rerun to retry them; 130: interrupted).
bench: $(STAMP)
	@test -n "$(BENCH_NAME)" -a -n "$(BENCH_MEMORY_GB)" || { echo "Error: use a preset such as make bench-m4max"; exit 2; }
	@status=0; for family in $(BENCH_FAMILIES); do \
		$(BIN)/mlxdraft sweep --family $$family --memory-gb $(BENCH_MEMORY_GB) $(BENCH_FILTERS) \
			--strategy $(BENCH_STRATEGY) -o results/$(BENCH_NAME)-$$family.json --resume; code=$$?; \
		if [ $$code -eq 130 ]; then exit 130; fi; \
		if [ $$code -ne 0 ]; then status=$$code; echo "$$family: sweep exited $$code" >&2; fi; \
		if [ -f results/$(BENCH_NAME)-$$family.json ]; then \
			$(BIN)/mlxdraft report results/$(BENCH_NAME)-$$family.json --format markdown \
				-o results/$(BENCH_NAME)-$$family.md || status=1; \
		fi; \
	done; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check mlxdraft tests scripts

## make bench-overhead: parity with mlx-lm (the baseline vs mlx_lm.stream_generate, the own loop vs mlx-lm's
## speculative loop) on SmolLM2; BENCH_OVERHEAD_ARGS=--tiny: tiny random models, seconds
bench-overhead: $(STAMP)
	$(BIN)/python scripts/bench_overhead.py $(BENCH_OVERHEAD_ARGS)

## make bench-methods: the drafting methods side by side on SmolLM2 (about an hour on a 2-core CPU)
bench-methods: $(STAMP)
	$(BIN)/python scripts/bench_methods.py --json results/bench-methods.json

## make bench-sweep: the smart sweep, replayed and live, against the exhaustive one (tiny models: under a minute;
## BENCH_SWEEP_MODELS=smollm2: fp16 and bf16 targets, fp32/q8/q4 drafts, k 1-6, 16 tokens: about 1.1 hours here)
BENCH_SWEEP_MODELS ?= tiny
bench-sweep: $(STAMP)
	$(BIN)/python scripts/bench_sweep.py --models $(BENCH_SWEEP_MODELS) --max-tokens 16 \
		--json results/bench-sweep-$(BENCH_SWEEP_MODELS).json

## make bench-serve: mlxdraft serve against mlxdraft generate (overhead) and mlx_lm.server (throughput, time to first
## token, latency at T 0 and 0.7, 1 and 4 clients), and its memory over 200 requests; SmolLM2 offline (fp16 target,
## q8 draft, draft k=4). BENCH_SERVE_ARGS=--quick: a short check (under a minute on a quiet machine)
BENCH_SERVE_ARGS ?=
bench-serve: $(STAMP)
	$(BIN)/python scripts/bench_serve.py $(BENCH_SERVE_ARGS) --json results/bench-serve.json

## make bench-engines: MLX beside llama.cpp on SmolLM2 offline (fp16/F16 and q8/Q8_0 targets, 4-bit drafts, k 2 and 4,
## each engine's own loops): baselines, best setups and the ratio between engines, with intervals; a report beside it
bench-engines: $(STAMP)
	$(BIN)/mlxdraft sweep --family smollm2 --engines mlx-lm,llama.cpp --target-precisions fp16,q8 --draft-precisions q4 \
		-k 2,4 --methods mlx-lm,draft,llama.cpp-draft,llama.cpp-ngram --max-tokens 48 --prompts scripts/demo_prompts.jsonl \
		-o results/bench-engines.json --force
	$(BIN)/mlxdraft report results/bench-engines.json --format html -o results/bench-engines.html

## make bench-distributed: two ranks on localhost (ring) against one process: tok/s, tokens per round, the share
## of a verify pass spent communicating; and the on-paper Qwen2.5-72B over two Macs from the speedup model
bench-distributed: $(STAMP)
	$(BIN)/python scripts/bench_distributed.py

clean:
	rm -rf $(VENV) build *.egg-info

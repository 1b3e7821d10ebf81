# The two commands of the README, and what they need. Everything installs itself on first use:
# a Rust toolchain and python3 are the only prerequisites (.venv gets libtorch and the interop packages).

VENV   := .venv
PYTHON := $(VENV)/bin/python
BIN    := target/release/hashprep
TRAIN  := target/release/hashtrain
DEMO   := out/demo

# tch builds against the venv's PyTorch and its libraries are found at run time. Expanded when a
# recipe runs, after the venv exists.
TORCH_LIB = $(shell $(PYTHON) -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
TORCH_ENV = LIBTORCH_USE_PYTORCH=1 PATH="$(abspath $(VENV))/bin:$$PATH" LD_LIBRARY_PATH="$(TORCH_LIB):$$LD_LIBRARY_PATH"

# A clean CI build gains nothing from incremental compilation, whose files cost gigabytes of disk.
ifdef CI
export CARGO_INCREMENTAL := 0
endif

.PHONY: demo test bench table3 paper paper-rest table8 venv build wheel python clean

# libtorch for hashtrain (PyTorch's wheel, ~4.6 GB with its CUDA libraries).
$(VENV)/.torch: requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt
	touch $@

# Plus pyarrow, tokenizers, jsonschema, numpy: the tests check that Python users can read our files.
$(VENV)/.dev: requirements-dev.txt $(VENV)/.torch
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements-dev.txt
	touch $@

venv: $(VENV)/.dev

# The Python package (crates/hashprep-py), built once in release mode and installed into .venv.
PY_SOURCES := $(shell find crates/hashprep-py crates/hashprep/src crates/hashtrain-config -type f -not -path '*/__pycache__/*')
$(VENV)/.hashprep-py: $(VENV)/.dev $(PY_SOURCES) Cargo.lock
	$(VENV)/bin/maturin develop --quiet --release --locked -m crates/hashprep-py/Cargo.toml
	touch $@

python: $(VENV)/.hashprep-py

# An abi3 wheel for CPython >= 3.9 on Linux x86_64 with glibc 2.28 or newer (manylinux_2_28, as
# PyTorch's wheels): target/wheels/hashprep-*.whl, linked by zig against glibc 2.28 and checked.
wheel: $(VENV)/.dev requirements-wheel.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements-wheel.txt
	rm -f target/wheels/hashprep-*.whl
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin build --release --locked --zig \
		--compatibility manylinux_2_28 -m crates/hashprep-py/Cargo.toml -o target/wheels
	$(PYTHON) scripts/check_wheel.py target/wheels/hashprep-*.whl

build: $(VENV)/.torch
	cargo build --release --locked -p hashprep
	$(TORCH_ENV) cargo build --release --locked -p hashtrain

# Demo: real Wikitext-103 validation text (shipped in data/) through GPT-2's BPE and through a
# word-level vocabulary trained on the spot; prints a summary of each output, then builds
# balanced and random token -> expert tables and compares their loads (with a plot); then trains
# a small dense model and the same model with a balanced Hash layer on CPU (validated on the
# Wikitext-103 test text) and prints each one's validation perplexity.
demo: build $(VENV)/.hashprep-py
	$(BIN) tokenize --format wikitext103 --tokenizer gpt2 --out $(DEMO)/gpt2 --force \
		data/wikitext-103/wiki.valid.tokens
	$(BIN) inspect $(DEMO)/gpt2 --top 10
	$(BIN) train-tokenizer --format wikitext103 --kind word --min-count 3 \
		--out $(DEMO)/word-tokenizer.json data/wikitext-103/wiki.valid.tokens
	$(BIN) tokenize --format wikitext103 --tokenizer $(DEMO)/word-tokenizer.json --eos-token '<eos>' \
		--out $(DEMO)/word --force data/wikitext-103/wiki.valid.tokens
	$(BIN) inspect $(DEMO)/word --top 10
	$(BIN) build-table --data $(DEMO)/word --method balanced --experts 16 --out $(DEMO)/balanced.arrow
	$(BIN) build-table --data $(DEMO)/word --method random --experts 16 --out $(DEMO)/random.arrow
	$(BIN) compare-tables --data $(DEMO)/word $(DEMO)/balanced.arrow $(DEMO)/random.arrow --plot $(DEMO)/loads.png
	@echo "load plot: $(DEMO)/loads.png"
	$(BIN) tokenize --format wikitext103 --tokenizer $(DEMO)/word-tokenizer.json --eos-token '<eos>' \
		--out $(DEMO)/word-test --force data/wikitext-103/wiki.test.tokens
	$(TORCH_ENV) $(TRAIN) run --config pipelines/demo-dense.toml --out $(DEMO)/runs/dense --force
	$(TORCH_ENV) $(TRAIN) run --config pipelines/demo-hash.toml --out $(DEMO)/runs/hash --force
	@echo "curves: $(DEMO)/runs/dense/curves.png $(DEMO)/runs/hash/curves.png"

test: $(VENV)/.hashprep-py
	@# hashprep must never link libtorch; without its default features it compiles no CLI.
	! cargo tree --locked -p hashprep --edges normal,build | grep -q torch-sys
	! cargo tree --locked -p hashprep --no-default-features --edges normal | grep -qE '^[^a-z]*(clap|indicatif|plotters) '
	cargo check --locked -p hashprep --lib --no-default-features
	@# hashtrain likewise: without its default `cli` feature, no CLI dependency; its run config
	@# (read by the Python package too) never links libtorch.
	! $(TORCH_ENV) cargo tree --locked -p hashtrain --no-default-features --edges normal | grep -qE '^[^a-z]*(clap|indicatif|plotters) '
	! cargo tree --locked -p hashtrain-config --edges normal,build | grep -q torch-sys
	$(TORCH_ENV) cargo clippy --locked -p hashtrain --lib --no-default-features -- -D warnings
	cargo fmt --all --check
	@# No two rooms (top-level modules) of a crate import each other, directly or around a loop.
	python3 scripts/check_rooms.py crates/hashprep/src crates/hashtrain/src crates/hashtrain-config/src crates/hashprep-py/src
	$(TORCH_ENV) cargo clippy --workspace --all-targets --locked -- -D warnings
	@# The bench executable too: tests/train/cuda_link.rs checks what every hashtrain executable links.
	$(TORCH_ENV) cargo test --locked -p hashtrain --bench train_step --no-run
	$(TORCH_ENV) HASHPREP_PYTHON=$(abspath $(PYTHON)) cargo test --workspace --locked
	@# The package's types: hashprep.torch and the re-exports under mypy --strict, and the stubs of
	@# the extension against the built module (stubtest).
	cd crates/hashprep-py/python && $(abspath $(PYTHON)) -m mypy --strict --cache-dir=/dev/null hashprep
	$(PYTHON) -m mypy.stubtest hashprep._hashprep --ignore-disjoint-bases --mypy-config-file /dev/null \
		--allowlist crates/hashprep-py/stubtest-allowlist.txt
	@# The Python package against the CLI the tests above built.
	HASHPREP_BIN=target/debug/hashprep $(PYTHON) -m pytest -q -p no:cacheprovider tests/python

# The paper's Table 3 comparisons in miniature on the shipped Wikitext-103 text (about 35 minutes
# on 2 CPU cores): 13 models, then runs/table3/results.md and curves.png. Rerunning skips
# finished runs and recomputes the table.
table3: build
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table3-small.toml --out runs/table3

# The rest of the paper's comparisons in miniature (about 3 hours on 2 CPU cores, resumable):
# Table 3 over seeds 1-2-3 (mean ± std), Figure 3 left with Table 1's 1xK and wider/deeper dense
# rows, Figure 3 right with the 2x16 rows.
paper: build
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table3-seeds.toml --out runs/table3-seeds
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-experts-small.toml --out runs/experts
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-layers-small.toml --out runs/layers

# The comparisons of issue 36 in miniature, each sweep under ~90 minutes on 2 CPU cores
# (resumable): Table 9 (Switch's load balancing), Table 4 (two dictionaries), Table 1 on the
# sequence-to-sequence dialogue model over real Reddit, Figure 2 (Hash vs BASE over training),
# Table 8 (fine-tuning).
paper-rest: build table8
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table9-seeds.toml --out runs/table9-seeds
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table4-bpe-seeds.toml --out runs/table4-bpe-seeds
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table4-word-seeds.toml --out runs/table4-word-seeds
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table1-seq2seq-seeds.toml --out runs/table1-seq2seq-seeds
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-figure2-seeds.toml --out runs/figure2-seeds

# Table 8: seq2seq pretrained on Wikitext-103 sentence threads, fine-tuned on real Reddit.
THREADS := out/wikitext-threads
table8: build
	test -f $(THREADS)/RC_wikitext-valid || python3 scripts/wikitext_threads.py data/wikitext-103/wiki.valid.tokens $(THREADS)/RC_wikitext-valid
	test -f $(THREADS)/RC_wikitext-test-0 || python3 scripts/wikitext_threads.py data/wikitext-103/wiki.test.tokens $(THREADS)/RC_wikitext-test-0 2 0
	test -f $(THREADS)/RC_wikitext-test-1 || python3 scripts/wikitext_threads.py data/wikitext-103/wiki.test.tokens $(THREADS)/RC_wikitext-test-1 2 1
	$(TORCH_ENV) $(TRAIN) sweep --config pipelines/paper-table8-seeds.toml --out runs/table8-seeds

# Benchmarks against the tools people use today (HF datasets + tokenizers). Not part of CI.
bench: build $(VENV)/.hashprep-py
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir -r benches/requirements.txt
	$(PYTHON) benches/tokenize_vs_hf.py --hashprep $(BIN)
	$(PYTHON) benches/tables_vs_python.py --hashprep $(BIN)
	$(PYTHON) benches/reddit_pipeline.py --hashprep $(BIN)
	$(TORCH_ENV) cargo bench --locked -p hashtrain --bench train_step
	cargo bench --locked -p hashprep --bench loader
	cargo bench --locked -p hashprep --bench top_k_tables
	$(PYTHON) benches/python_loader.py
	$(PYTHON) benches/ep_step.py

clean:
	rm -rf out target/bench

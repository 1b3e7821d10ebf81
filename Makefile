# The two commands of the README, and what they need. Everything installs itself on first use:
# a Rust toolchain is the only prerequisite (plus python3 for the interop tests' venv).

VENV   := .venv
PYTHON := $(VENV)/bin/python
BIN    := target/release/hashprep
DEMO   := out/demo

.PHONY: demo test bench venv build clean

# A Python venv with pyarrow and tokenizers: the tests check that Python users can read our files.
$(PYTHON): requirements-dev.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(PYTHON)

venv: $(PYTHON)

build:
	cargo build --release --locked -p hashprep

# Demo: real Wikitext-103 validation text (shipped in data/) through GPT-2's BPE and through a
# word-level vocabulary trained on the spot; prints a summary of each output, then builds
# balanced and random token -> expert tables and compares their loads (with a plot).
demo: build
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

test: $(PYTHON)
	HASHPREP_PYTHON=$(abspath $(PYTHON)) cargo test --workspace --locked

# Benchmarks against the tools people use today (HF datasets + tokenizers). Not part of CI.
bench: build $(PYTHON)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r benches/requirements.txt
	$(PYTHON) benches/tokenize_vs_hf.py --hashprep $(BIN)
	$(PYTHON) benches/tables_vs_python.py --hashprep $(BIN)
	$(PYTHON) benches/reddit_pipeline.py --hashprep $(BIN)

clean:
	rm -rf out target/bench

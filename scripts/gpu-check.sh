#!/usr/bin/env bash
# hashtrain on a lent GPU machine: PyTorch 2.11 (cu130) for Python 3.12, but no Rust toolchain
# and no network. Everything is built here and packed; one command there runs every check and
# writes every figure to one results file.
#
#   scripts/gpu-check.sh pack          # here: build, strip and pack into gpu-pack/ (<= 64 MiB)
#   scripts/gpu-check.sh run [FILE]    # there, in the repository root: the checks, figures in
#                                      # FILE (default $OUT/gpu-check.txt, else gpu-check.txt)
#
# A rehearsal here, on the CPU with the small bench model (everything but the GPU):
# `GPU_CHECK_DEVICE=cpu GPU_CHECK_BENCH_MODEL=small scripts/gpu-check.sh run`.
#
# With the device tool: `run` with carry ["gpu-pack"] and the command
# `scripts/gpu-check.sh run` (timeout 600 s; sized to end well within it, not yet run on a GPU).
#
# `run` does, in order: `hashtrain info`; a 60-step Hash model (Wikitext-103 valid, word-level
# vocabulary, 16 experts) on CPU and CUDA in fp32 and bf16, its train losses compared step by
# step (CUDA against CPU, same seed and weights); the train_step bench at the paper's size
# (BENCH_MODEL=paper, dense / hash / Switch / Token-Switch, MFU); benches/ep_step.py on one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

PACK=${PACK:-gpu-pack}
# The most the device tool carries with the working tree (together with the tracked files).
LIMIT_MIB=64

die() { echo "gpu-check: $*" >&2; exit 2; }

torch_lib() {
    "$1" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'
}

# The NEEDED libraries of an ELF file, one per line.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

pack() {
    local python=.venv/bin/python
    [[ -x $python ]] || die "no .venv: run \`make venv\` first"
    local lib
    lib=$(torch_lib "$python")
    export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
    cargo build --release --locked -p hashtrain
    local bench
    bench=$(cargo bench --no-run --locked -p hashtrain --bench train_step --message-format=json \
        | "$python" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "train_step" and m.get("executable"):
        print(m["executable"])')
    [[ -n $bench ]] || die "cargo bench --no-run gave no train_step executable"
    rm -rf "$PACK"
    mkdir -p "$PACK/bin" "$PACK/wheel"
    .venv/bin/maturin build --quiet --release --locked --strip -m crates/hashprep-py/Cargo.toml -o "$PACK/wheel"
    cp target/release/hashtrain "$PACK/bin/hashtrain"
    cp "$bench" "$PACK/bin/train_step"
    strip "$PACK/bin/hashtrain" "$PACK/bin/train_step"
    if [[ -e $lib/libtorch_cuda.so ]]; then
        for exe in "$PACK"/bin/*; do
            needed "$exe" | grep -qx libtorch_cuda.so || die "$exe does not link libtorch_cuda.so"
        done
    fi
    # The packed binaries start with the venv's libtorch.
    LD_LIBRARY_PATH="$lib" "$PACK/bin/hashtrain" info
    if LD_LIBRARY_PATH="$lib" ldd "$PACK/bin/train_step" | grep 'not found'; then
        die "$PACK/bin/train_step: libraries not found"
    fi
    local packed tracked
    packed=$(du -sb "$PACK" | cut -f1)
    tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    echo "packed: $((packed / 1048576)) MiB in $PACK, tracked files $((tracked / 1048576)) MiB (limit $LIMIT_MIB MiB together)"
    ((packed + tracked <= LIMIT_MIB * 1048576)) || die "$PACK and the tracked files exceed $LIMIT_MIB MiB"
}

run() {
    local results=${1:-${OUT:+$OUT/gpu-check.txt}}
    results=${results:-gpu-check.txt}
    [[ -x $PACK/bin/hashtrain && -x $PACK/bin/train_step ]] || die "no $PACK/bin: run \`$0 pack\` here first"
    local python=${PYTHON:-python3}
    local lib
    lib=$(torch_lib "$python")
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONUNBUFFERED=1
    local work=${GPU_CHECK_WORK:-/tmp/gpu-check}
    rm -rf "$work"
    mkdir -p "$work/runs"
    "$python" -m pip install --quiet --no-index --no-deps --target "$work/site" "$PACK"/wheel/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
    : >"$results"
    section() { echo "== $* ==" | tee -a "$results"; }
    local hashtrain=$PACK/bin/hashtrain
    local gpu=${GPU_CHECK_DEVICE:-cuda}

    section "hashtrain info"
    "$hashtrain" info | tee -a "$results"

    section "data: Wikitext-103 valid (train) and test (valid), word-level vocabulary, balanced table"
    "$python" - "$work" <<'EOF' | tee -a "$results"
import sys, hashprep
work = sys.argv[1]
wiki = "data/wikitext-103/wiki.{}.tokens"
tok = hashprep.train_tokenizer([wiki.format("valid")], f"{work}/word.json", format="wikitext103",
                               kind="word", min_count=3, progress=False)
for split, out in (("valid", "train"), ("test", "valid")):
    s = hashprep.tokenize([wiki.format(split)], f"{work}/{out}", format="wikitext103",
                          tokenizer=f"{work}/word.json", eos_token="<eos>", progress=False)
    print(f"{out}: {s['tokens']} tokens")
hashprep.build_table(f"{work}/train", f"{work}/balanced.arrow", method="balanced", experts=16)
EOF

    section "training parity: $gpu against CPU, same seed and weights"
    local config=pipelines/gpu-check.toml
    local sets=(--set "data.train=\"$work/train\"" --set "data.valid=\"$work/valid\""
        --set "model.sparse.0.table=\"$work/balanced.arrow\"")
    for precision in fp32 bf16; do
        for side in cpu gpu; do
            local device=cpu
            [[ $side == gpu ]] && device=$gpu
            "$hashtrain" --no-progress run --config "$config" "${sets[@]}" \
                --set "train.precision=\"$precision\"" --device "$device" \
                --out "$work/runs/$precision-$side" --json >"$work/runs/$precision-$side.json"
        done
    done
    "$python" - "$work/runs" "$gpu" <<'EOF' | tee -a "$results"
import json, sys
runs, gpu = sys.argv[1:3]
# Float32 differs only in the order of sums; bfloat16 keeps 8 bits of mantissa.
TOLERANCE = {"fp32": 5e-3, "bf16": 3e-2}
failed = False
def losses(name):
    with open(f"{runs}/{name}/metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in records if r["type"] == "train"}
for precision, tol in TOLERANCE.items():
    cpu, cuda = losses(f"{precision}-cpu"), losses(f"{precision}-gpu")
    if sorted(cpu) != sorted(cuda) or not cpu:
        print(f"{precision}: logged steps differ: cpu {sorted(cpu)}, cuda {sorted(cuda)}")
        failed = True
        continue
    worst = max(abs(cuda[s] - cpu[s]) / abs(cpu[s]) for s in cpu)
    last = max(cpu)
    ok = worst <= tol
    failed |= not ok
    print(f"{precision}: {len(cpu)} train losses, max relative difference {worst:.2e} "
          f"(tolerance {tol:.0e}) {'ok' if ok else 'FAILED'}; step {last}: cpu {cpu[last]:.4f}, {gpu} {cuda[last]:.4f}")
sys.exit(1 if failed else 0)
EOF

    local model=${GPU_CHECK_BENCH_MODEL:-paper}
    section "train_step bench, $model size, $gpu"
    BENCH_DEVICE=$gpu BENCH_MODEL=$model BENCH_TEXT=data/wikitext-103/wiki.valid.tokens \
        "$PACK/bin/train_step" 2>&1 | tee -a "$results"

    section "EP step, one process on $gpu"
    "$python" benches/ep_step.py --device "${gpu%%:*}" --world 1 2>&1 | tee -a "$results"
    echo "results: $results"
}

case ${1:-} in
pack) pack ;;
run) run "${2:-}" ;;
*) die "usage: $0 pack | run [RESULTS]" ;;
esac

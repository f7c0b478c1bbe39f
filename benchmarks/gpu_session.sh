#!/usr/bin/env bash
# Issue 16's GPU measurements in one device call: FlexAttention checked on CUDA, the
# throughput table against the reference GPT at both shapes, and a short pipeline run with
# the largest preset that fits the card. Figures and logs land in $OUT.
#
#   here, once, with PyPI reachable:  bash benchmarks/gpu_session.sh wheels
#       (wheels of what the device lacks, into .whl/, which .git/info/exclude ignores)
#   on the device, one call:          bash benchmarks/gpu_session.sh [PHASE...]
#       (carry: [".whl"]; phases flex, throughput, muon, pipeline; default all four;
#        open_model, issue 26's SFT of a 1B-shaped Llama 3.2, in a call of its own)
#   the pipeline phase's overlay, to read or test:  bash benchmarks/gpu_session.sh overlay
#
# Each phase has its own time limit (seconds, overridable below) so the whole call ends
# inside one 600-second device command; a phase that runs out is logged and the next runs.
# Files in $OUT: session.log, gpu.txt, throughput.json, pretrain_metrics.json, sft_metrics.json,
# open_model_sft.json.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=.whl
MISSING_MODULES="snakemake zstandard jsonschema torchao"
INSTALL_SECONDS=${INSTALL_SECONDS:-40}
FLEX_SECONDS=${FLEX_SECONDS:-60}
THROUGHPUT_SECONDS=${THROUGHPUT_SECONDS:-300}
PIPELINE_SECONDS=${PIPELINE_SECONDS:-180}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-15}
MUON_SECONDS=${MUON_SECONDS:-60}
OPEN_MODEL_SECONDS=${OPEN_MODEL_SECONDS:-400}
TORCHAO_VERSION=0.17.0  # float8 training; built against torch 2.11, the device's

build_wheels() {
    # Pure-Python sdists (connection_pool) become wheels here; the rest are downloaded as
    # CPython 3.12 manylinux wheels, the device's Python, with every dependency.
    local pins=(snakemake zstandard jsonschema)
    local specs=()
    for name in "${pins[@]}"; do
        specs+=("$name==$("$PYTHON" -m pip show "$name" | awk '/^Version/ {print $2}')")
    done
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip wheel -q --no-deps -w "$WHEELS" connection_pool==0.0.3
    "$PYTHON" -m pip download -q --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        --find-links "$WHEELS" -d "$WHEELS" "${specs[@]}"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
        -d "$WHEELS" "torchao==$TORCHAO_VERSION"
    # Llama 3.2's tokenizer files for the open_model phase (the device reaches no registry).
    local tokenizer
    tokenizer=$("$PYTHON" -c "import sys; sys.path.insert(0, 'tests'); import real_tokenizers as r; print(r.fetch('llama3.2'))")
    rm -rf "$WHEELS/llama3.2" && cp -r "$tokenizer" "$WHEELS/llama3.2"
    du -sh "$WHEELS"
}

phase() {
    # phase NAME SECONDS COMMAND...: run it under a limit, its output into the session log.
    local name=$1 seconds=$2
    shift 2
    echo "== $name (limit ${seconds}s): $*" | tee -a "$OUT/session.log"
    local started=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$OUT/session.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $((SECONDS - started))s" | tee -a "$OUT/session.log"
}

install_missing() {
    local missing
    missing=$("$PYTHON" - "$MISSING_MODULES" <<'EOF'
import importlib.util
import sys

print(" ".join(name for name in sys.argv[1].split() if importlib.util.find_spec(name) is None))
EOF
)
    if [ -n "$missing" ]; then
        "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" $missing
    fi
}

pipeline_overlay() {
    # A few minutes of the preset: its model, sequence and micro-batch, fewer steps, one
    # micro-batch a step, a tokenizer the standard-library corpus can fill, no MLflow.
    cat <<'EOF'
tokenizer: {vocab_size: 8000}
pretrain: {gradient_accumulation_steps: 1, total_steps: 120, warmup_steps: 12,
           eval_steps: 60, save_steps: 60, log_steps: 20, eval_batches: 5}
sft: {total_steps: 30, warmup_steps: 3, eval_steps: 30, save_steps: 30, log_steps: 5,
      eval_batches: 2}
tracking: {enabled: false}
EOF
}

run_pipeline() {
    local memory preset work
    memory=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory / 2**30)")
    preset=$("$PYTHON" -c "from helox.pipeline.plan import largest_preset; print(largest_preset($memory))")
    work=$(mktemp -d)
    pipeline_overlay >"$work/smoke.yaml"
    echo "preset $preset for ${memory} GiB; workdir $work"
    "$PYTHON" -m helox.cli plan --config config.yaml --config "$preset" --config "$work/smoke.yaml"
    "$PYTHON" -m snakemake results/sft/final --snakefile "$PWD/Snakefile" --directory "$work" \
        --cores 16 --configfile "$preset" "$work/smoke.yaml"
    local status=$?
    for stage in pretrain sft; do
        [ -f "$work/results/$stage/final/metrics.json" ] &&
            cp "$work/results/$stage/final/metrics.json" "$OUT/${stage}_metrics.json"
        [ -f "$work/logs/$stage.log" ] && tail -n 40 "$work/logs/$stage.log"
    done
    return $status
}

main() {
    OUT=${OUT:-$PWD/results/gpu_session}
    mkdir -p "$OUT"
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    export PYTHON OUT WHEELS MISSING_MODULES
    export -f install_missing run_pipeline pipeline_overlay
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    phase install "$INSTALL_SECONDS" bash -c install_missing
    local phases=("$@")
    [ ${#phases[@]} -eq 0 ] && phases=(flex throughput muon pipeline)
    for name in "${phases[@]}"; do
        case $name in
        flex) phase flex "$FLEX_SECONDS" "$PYTHON" -m pytest -p no:cacheprovider -n 0 -q \
            tests/test_flex_attention.py ;;
        throughput) phase throughput "$THROUGHPUT_SECONDS" "$PYTHON" \
            benchmarks/gpu_throughput.py --steps "$THROUGHPUT_STEPS" --json "$OUT/throughput.json" ;;
        muon) phase muon "$MUON_SECONDS" "$PYTHON" benchmarks/muon_step.py --shape 124m ;;
        pipeline) phase pipeline "$PIPELINE_SECONDS" bash -c run_pipeline ;;
        open_model) phase open_model "$OPEN_MODEL_SECONDS" "$PYTHON" benchmarks/open_model_sft.py \
            --tokenizer "$WHEELS/llama3.2" --json "$OUT/open_model_sft.json" ;;
        *) echo "unknown phase $name (flex, throughput, muon, pipeline, open_model)" && return 2 ;;
        esac
    done
    grep -E "^(SFT/pretraining|Helox/reference|Helox/transformers|torch Muon)|passed|failed|: exit " \
        "$OUT/session.log"
}

case ${1:-} in
wheels) build_wheels ;;
overlay) pipeline_overlay ;;
*) main "$@" ;;
esac

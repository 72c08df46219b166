#!/usr/bin/env bash
# GPU check, for a machine with CUDA: the suite's device tests (`pytest -m cuda`), then one round
# of the `paper` preset's protocol (full pools, 15 epochs, 2000 self-training steps) with the
# offline MiniLM (RoBERTa's weights are not reachable offline) on TREC and SST-2, through
# `python -m benchmark bench`: per-phase seconds, the bf16 path taken, peak GPU memory, ACTUNE's
# overhead share, and padded vs packed training steps. About 5 minutes on an H200.
#
#   bash scripts/gpu_check.sh [DATA_DIR]     DATA_DIR: default $ACTUNE_DATA, else ../shared/data
#
# The figures also go to $OUT (or ./gpu_check) as JSON, one file per dataset.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: no CUDA device (torch.cuda.is_available() is False): this check needs a GPU" >&2
    exit 2
fi
data="${1:-${ACTUNE_DATA:-../shared/data}}"
for ds in trec sst2; do
    if [ ! -f "$data/$ds/train.jsonl" ]; then
        echo "error: $data/$ds/train.jsonl not found: pass the data folder as the first argument" >&2
        exit 2
    fi
done
out="${OUT:-gpu_check}"
mkdir -p "$out"

python - <<'PY'
import torch
p = torch.cuda.get_device_properties(0)
print(f"== {p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor}; torch "
      f"{torch.__version__}, CUDA {torch.version.cuda}; native bf16: {torch.cuda.is_bf16_supported()}")
PY
echo "== device tests (pytest -m cuda)"
SECONDS=0
python -m pytest -q -m cuda -p no:cacheprovider
echo "   ${SECONDS} s"
for ds in trec sst2; do
    echo "== one round of the paper protocol, MiniLM, ACTUNE (ssal) on $ds"
    SECONDS=0
    python -m benchmark bench --method actune --dataset "$ds" --preset paper \
        --set backbone=minilm --data-dir "$data" --device cuda \
        --json "$out/bench_actune_${ds}_paper_minilm_cuda.json"
    echo "   ${SECONDS} s in all (tokenisation, round 0, selection, round 1, training comparison)"
done

#!/usr/bin/env bash
# One script that spends a short GPU window well (about 10 minutes on one H100/H200):
#   1. the machine (nvidia-smi, torch and CUDA versions);
#   2. the serving matrix: fast `recommend` vs stock `generate` + trie, {demo, TIGER} size x {history 5, 20}
#      x {batch 1, 32, 256}, identical top-k checked in every cell;
#   3. training throughput of the TIGER-size model, batch 256 and 1024, fp32 and bf16;
#   4. a short Beauty run of configs/beauty-tiger.yaml (the paper-size recipe), time-boxed.
# Every step writes JSON or a log into OUT_DIR (default: $OUT when set, else runs/gpu-suite) and a failed
# step does not stop the next. `--dry-run` runs the same steps on CPU at tiny sizes (a test does, so the
# script is known to work before a GPU is at hand).
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR] [--dry-run]
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
OUT_DIR=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    *) OUT_DIR="$arg" ;;
  esac
done
OUT_DIR="${OUT_DIR:-${OUT:-runs/gpu-suite}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python}"
[ -x .venv/bin/python ] && PY="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
FAILED=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, keep going on failure
  local name="$1" limit="$2"
  shift 2
  echo "[gpu_suite] $name" | tee -a "$OUT_DIR/suite.log"
  if ! timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1; then
    echo "[gpu_suite] $name FAILED (see $name.log)" | tee -a "$OUT_DIR/suite.log"
    FAILED=$((FAILED + 1))
  fi
}

if [ "$DRY" = 1 ]; then
  DEVICE=cpu USERS=4 ITEMS=500 STEPS=2 SIZES="demo" HISTORIES="5" BATCHES="2" TRAIN_BATCHES="8" LIMIT=300
else
  DEVICE=cuda USERS=512 ITEMS=12101 STEPS=30 SIZES="demo tiger" HISTORIES="5 20" BATCHES="1 32 256"
  TRAIN_BATCHES="256 1024" LIMIT=150
fi

{ nvidia-smi || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } >"$OUT_DIR/machine.txt" 2>&1

for size in $SIZES; do
  for history in $HISTORIES; do
    for batch in $BATCHES; do
      users=$USERS
      [ "$batch" = 1 ] && users=$((USERS < 64 ? USERS : 64))
      step "serve-$size-h$history-b$batch" "$LIMIT" "$PY" benchmarks/bench_recommend.py --device "$DEVICE" --size "$size" \
        --history "$history" --batch-size "$batch" --users "$users" --items "$ITEMS" --precision bf16 \
        --output "$OUT_DIR/serve-$size-h$history-b$batch.json"
    done
  done
done

for batch in $TRAIN_BATCHES; do
  for precision in fp32 bf16; do
    step "train-tiger-b$batch-$precision" "$LIMIT" "$PY" benchmarks/bench_train.py --device "$DEVICE" --size tiger \
      --batch-size "$batch" --precision "$precision" --steps "$STEPS" --output "$OUT_DIR/train-tiger-b$batch-$precision.json"
  done
done

if [ "$DRY" = 1 ]; then
  BEAUTY=(data.max_users=1500 data.min_item_interactions=3 data.min_user_interactions=3 "data.text_fields=[title]" embeddings.max_seq_length=32 quantizer.epochs=100
          quantizer.codebook_size=64 quantizer.batch_size=256 training.max_steps=2 training.eval_steps=2 evaluation.max_validation_users=20
          evaluation.max_test_users=20)
  BEAUTY_LIMIT=600
else
  BEAUTY=(training.max_steps=2000 training.eval_steps=1000 evaluation.max_validation_users=2000)
  BEAUTY_LIMIT=400
fi
step beauty-tiger "$BEAUTY_LIMIT" "$PY" train.py --config configs/beauty-tiger.yaml "output_dir=$OUT_DIR/beauty-tiger" \
  "${BEAUTY[@]}" --overwrite_output_dir
[ -f "$OUT_DIR/beauty-tiger/metrics.json" ] && cp "$OUT_DIR/beauty-tiger/metrics.json" "$OUT_DIR/beauty-tiger-metrics.json"

"$PY" - "$OUT_DIR" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json")) if path.name != "summary.json"}
(out / "summary.json").write_text(json.dumps(rows, indent=1))
print(f"[gpu_suite] {len(rows)} result files in {out}/summary.json")
PY
echo "[gpu_suite] done, $FAILED step(s) failed" | tee -a "$OUT_DIR/suite.log"
exit $((FAILED > 0))

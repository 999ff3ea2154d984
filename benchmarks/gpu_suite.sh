#!/usr/bin/env bash
# One script that spends a short GPU window well (one H100/H200, under 10 minutes of wall time):
#   1. the machine (nvidia-smi, torch and CUDA versions);
#   2. the results rows the open issues still miss, trained by the results harness in parallel lanes
#      (one GPU, one CPU thread each), all time-boxed together at QUALITY_LIMIT seconds. The harness skips
#      every run already in the committed results files, and each finished run lands its row at once in
#      OUT_DIR/results/<dataset>.jsonl (with its per-user ranks): a lane stopped by the time limit loses
#      only the run it was in. `python benchmarks/quality.py merge OUT_DIR/results` brings the new rows
#      (and their ranks) into benchmarks/results and renders the tables;
#   3. speed: the serving matrix (fast `recommend` vs stock `generate` + trie, identical top-k checked in
#      every cell) and training throughput of the TIGER-size model in fp32 and bf16.
# Every step writes JSON or a log into OUT_DIR (default: $OUT when set, else runs/gpu-suite); a failed step
# does not stop the next. Checkpoints stay in RUNS_DIR (default runs/gpu-suite-runs), out of OUT_DIR.
# `--dry-run` runs the same steps on CPU at tiny sizes, one smoke lane on a few hundred users (a test does,
# so the script is known to work before a GPU is at hand).
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

# Each lane: "name|quality.py run arguments", most wanted run first within a lane.
if [ "$DRY" = 1 ]; then
  DEVICE=cpu USERS=4 ITEMS=500 STEPS=2 SIZES="demo" HISTORIES="5" BATCHES="2" TRAIN_BATCHES="8" LIMIT=300
  QUALITY_LIMIT=600 RUNS_DIR="$OUT_DIR/runs"
  LANES=("smoke-mult-vae|scientific-mult-vae --recipes scientific-mult-vae-base --seeds 42 --budget demo --set data.max_users=1500 data.min_user_interactions=3 data.min_item_interactions=3 training.epochs=2 mult_vae.eval_every_epochs=1")
else
  DEVICE=cuda USERS=512 ITEMS=12101 STEPS=30 SIZES="demo tiger" HISTORIES="20" BATCHES="1 256"
  TRAIN_BATCHES="256 1024" LIMIT=60 QUALITY_LIMIT="${QUALITY_LIMIT:-420}" RUNS_DIR="${RUNS_DIR:-runs/gpu-suite-runs}"
  LANES=(  # issue 34's code-fit ranking first, then what issue 18 still misses
    "scientific-code-fits|scientific-code-fits --seeds 42 --budget converged"
    "beauty-tiger-cf|beauty-collaborative --recipes beauty-tiger-cf-cpu --seeds 42 43 44 --budget converged"
    "beauty-tiger-cf-soda|beauty-collaborative --recipes beauty-tiger-cf-soda-cpu --seeds 42 43 44 --budget converged"
    "beauty-tiger|beauty-floor --recipes beauty-tiger-cpu --seeds 43 44 --budget converged"
    "scientific-etegrec-soda|scientific-collaborative --recipes scientific-etegrec-soda-demo --seeds 42 43 44 --budget converged"
    "scientific-letter-soda|scientific-collaborative --recipes scientific-letter-soda-demo --seeds 42 43 44 --budget converged"
  )
fi

{ nvidia-smi || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } >"$OUT_DIR/machine.txt" 2>&1

# ----- 2. results rows ----------------------------------------------------------------------------------
mkdir -p "$OUT_DIR/results"
# what is finished already (the ranks stay behind); the smoke lane starts from nothing
[ "$DRY" = 1 ] || cp benchmarks/results/*.jsonl "$OUT_DIR/results/"
BEFORE=$(cat "$OUT_DIR"/results/*.jsonl 2>/dev/null | wc -l)
LANE_PIDS=()
for lane in "${LANES[@]}"; do
  name="${lane%%|*}"
  read -r -a args <<<"${lane#*|}"
  echo "[gpu_suite] quality-$name" | tee -a "$OUT_DIR/suite.log"
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout "$QUALITY_LIMIT" "$PY" benchmarks/quality.py run "${args[@]}" \
    --results-dir "$OUT_DIR/results" --runs-dir "$RUNS_DIR" >"$OUT_DIR/quality-$name.log" 2>&1 &
  LANE_PIDS+=("$!|$name")
done
for entry in "${LANE_PIDS[@]}"; do
  wait "${entry%%|*}"
  rc=$?
  if [ "$rc" = 124 ]; then  # the time box: the runs it finished have landed
    echo "[gpu_suite] quality-${entry#*|} reached the time limit ($QUALITY_LIMIT s)" | tee -a "$OUT_DIR/suite.log"
  elif [ "$rc" != 0 ]; then
    echo "[gpu_suite] quality-${entry#*|} FAILED (see quality-${entry#*|}.log)" | tee -a "$OUT_DIR/suite.log"
    FAILED=$((FAILED + 1))
  fi
done
AFTER=$(cat "$OUT_DIR"/results/*.jsonl 2>/dev/null | wc -l)
echo "[gpu_suite] $((AFTER - BEFORE)) new results row(s) in $OUT_DIR/results" | tee -a "$OUT_DIR/suite.log"

# ----- 3. speed -----------------------------------------------------------------------------------------
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

"$PY" - "$OUT_DIR" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json")) if path.name != "summary.json"}
(out / "summary.json").write_text(json.dumps(rows, indent=1))
print(f"[gpu_suite] {len(rows)} result files in {out}/summary.json")
PY
echo "[gpu_suite] done, $FAILED step(s) failed" | tee -a "$OUT_DIR/suite.log"
exit $((FAILED > 0))

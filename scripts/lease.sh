#!/usr/bin/env bash
# The paper scale's remaining runs on a lent GPU machine, one slice a call (results/paper/provenance.md).
#
#   here, before the lease:  bash scripts/lease.sh prepare        # .devcarry/site: hydra, omegaconf, antlr4
#                            bash scripts/lease.sh check SLICE    # the slice's runs and plan, on this CPU
#   on the lent machine:     bash scripts/lease.sh run SLICE      # (device tool: carry .devcarry and DATA's raw files;
#                            the tree travels within 64 MiB only with results/cpu/ moved aside: provenance.md)
#                            bash scripts/lease.sh test           # the tests that need CUDA (CI skips them), into $OUT
#   back here:               tar xzf <files_at>/slice.tgz && .venv/bin/qsd-reproduce --scale paper --collect-only
#
# SLICE: mlp (the MLPs' QSD 1.5x runs), cnn (the CNNs' grid and both arms' 1.5x runs), ptb (the medium PTB
# LSTM, claim 5a). Each run of a slice stacks with the runs of its experiment and schedule (--stack auto:
# as many as the GPU's memory holds, measured), several stacks side by side under MPS (JOBS), and stops
# starting stacks that would not end within BUDGET minutes; what finished is packed into $OUT/slice.tgz
# (small files only). IMDB runs one run a process (SLICE=imdb, JOBS 16), its raw files carried alone: a
# sentiment stack pads every member's batch to the longest review among them and runs a matmul LSTM
# eagerly where a single run uses cuDNN's (not measured on a GPU yet).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: lease.sh prepare | check SLICE | run SLICE | test}
slice=${2:-}
case "$slice" in
  mlp) ONLY="fig2_mlp_curves fig4_sparsity table3_tuned"; EXPS="mlp_mnist"; DATA="mnist"; JOBS=${JOBS:-4} ;;
  cnn) ONLY="fig6_cnn table3_tuned"; EXPS="cnn_mnist cnn_fashion cnn_fashion_extra"; DATA="mnist fashion_mnist"; JOBS=${JOBS:-4} ;;
  ptb) ONLY="fig7_lstm_lm"; EXPS="lstm_ptb"; DATA="ptb"; JOBS=${JOBS:-2} ;;
  imdb) ONLY="table3_tuned"; EXPS="lstm_imdb"; DATA="imdb"; JOBS=${JOBS:-16} ;;
  "") [ "$mode" = prepare ] || [ "$mode" = test ] || { echo "SLICE must be one of: mlp cnn ptb imdb" >&2; exit 2; } ;;
  *) echo "SLICE must be one of: mlp cnn ptb imdb (got '$slice')" >&2; exit 2 ;;
esac
STACK=$([ "$slice" = imdb ] && echo 1 || echo auto)
ARGS=(--scale paper --only ${ONLY:-} --experiments ${EXPS:-} --jobs "${JOBS:-1}" --stack "$STACK")

case "$mode" in
  prepare)  # the packages the lent machine's image lacks, from this checkout's .venv
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf .devcarry/site && mkdir -p .devcarry/site
    for pkg in hydra omegaconf antlr4; do cp -r "$site/$pkg" .devcarry/site/; done
    git log -1 --format=%h > .devcarry/commit  # the code's commit: the copy that travels has no git history
    du -sh .devcarry/site ;;
  check)  # which runs the slice would train (the time left is this machine's, not the GPU's)
    .venv/bin/qsd-reproduce "${ARGS[@]}" --dry-run | grep "^#" ;;
  run)
    export PYTHONPATH=$PWD/.devcarry/site:$PWD/src PYTHONUNBUFFERED=1
    export QSD_COMMIT=${QSD_COMMIT:-$(cat .devcarry/commit 2>/dev/null || echo unknown)}
    T0=$(date +%s)
    python3 -m qsd.data.cli fetch $DATA
    nvidia-cuda-mps-control -d || true
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 20 > "$OUT/gpu_util.txt" 2>&1 &
    trap 'kill $! 2>/dev/null; echo quit | nvidia-cuda-mps-control 2>/dev/null || true' EXIT
    # BUDGET (minutes): no stack starts that would not end inside the call; LIMIT (s): the call's own
    left=$(( ${LIMIT:-570} - ($(date +%s) - T0) )); [ "$left" -ge 60 ] || { echo "only ${left} s left" >&2; exit 1; }
    timeout -s TERM "$left" python3 -m qsd.reproduce "${ARGS[@]}" \
      --time-budget "${BUDGET:-7.5}" --pack "$OUT/slice.tgz" 2>&1 | tee "$OUT/log.txt" || true ;;
  test)  # every test whose name says cuda (those that need a GPU and a few CPU ones beside them), with tiny data
    export PYTHONPATH=$PWD/.devcarry/site:$PWD/src
    python3 -m pytest -q -p no:cacheprovider -k cuda tests/ 2>&1 | tee "${OUT:-.}/tests.txt" | tail -15 ;;
  *) echo "mode must be prepare, check, run or test" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The accelerator run of issue 14 item 4, as one script for a fresh GPU machine without network.
#
#   bash benchmarks/wheelhouse.sh                    # here, once, with PyPI: wheelhouse/ (~7.4 MB)
#   bash benchmarks/accelerator.sh [--tiny] [--budget S] [--fresh] [-- accelerator.py options]
#
# 1. installs what the GPU image lacks from wheelhouse/ (distrax, tfp-nightly, dm-tree, decorator,
#    gast, zuko), every one with --no-deps so the machine's own jax/jaxlib CUDA build and torch are
#    never replaced, then the package itself (pip install --no-deps -e .; PYTHONPATH if that fails);
# 2. prints nvidia-smi and jax.devices();
# 3. runs benchmarks/accelerator.py until START + BUDGET (default 500 s, so that the whole script
#    stays under 9 minutes), the python killed 45 s after that at the latest;
# 4. packs the resume state (checkpoints of the study, finished ladder points) into
#    accelerator_resume.tar.gz and copies accelerator.{md,json,log} and it to $OUT, if set.
# A later call resumes from wheelhouse/resume/accelerator_resume.tar.gz.NN when those pieces exist
# (copy the pieces a first call brought back there; wheelhouse/ is carried); --fresh ignores them.
#
# Environment: PYTHON (default python3), ACCEL_STATE (state folder, default /tmp/adasym_accelerator_state).
set -euo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=500
TINY=()
FRESH=0
EXTRA=()
ORIG_ARGS="$*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tiny) TINY=(--tiny); shift ;;
    --budget) BUDGET=$2; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "accelerator.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
STATE=${ACCEL_STATE:-/tmp/adasym_accelerator_state}
RESUME=wheelhouse/resume/accelerator_resume.tar.gz
if [[ ${#TINY[@]} -gt 0 ]]; then RESULTS=/tmp/adasym_accelerator_tiny; else RESULTS=$ROOT/benchmarks/results; fi
export PYTHONUNBUFFERED=1
export ACCEL_COMMAND="bash benchmarks/accelerator.sh${ORIG_ARGS:+ $ORIG_ARGS}"
LOG=$(mktemp /tmp/accelerator.XXXXXX.log)
say() { echo "[accelerator.sh +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# -- 1. install, without network -------------------------------------------------------------
say "installing from wheelhouse/ with $PY ($($PY -V 2>&1))"
ls wheelhouse/*.whl >/dev/null 2>&1 || { echo "no wheelhouse/: run bash benchmarks/wheelhouse.sh first (and carry it)" >&2; exit 1; }
"$PY" -m pip install -q --no-index --no-deps --no-cache-dir --find-links wheelhouse/ \
  distrax tfp-nightly dm-tree decorator gast zuko 2>&1 | tee -a "$LOG"
if "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . >>"$LOG" 2>&1; then
  say "installed adasym_jax (editable, --no-deps)"
else
  say "pip install -e . failed (no network for build isolation / old setuptools): using PYTHONPATH=$ROOT"
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib
for name in ("jax", "jaxlib", "flax", "optax", "chex", "distrax", "tensorflow_probability", "adasym_jax", "torch", "zuko"):
    try:
        m = importlib.import_module(name)
        print(f"  {name:24s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # torch / zuko are optional (the peer is skipped without them)
        print(f"  {name:24s} NOT importable: {type(e).__name__}: {e}")
import adasym_jax, distrax  # noqa: F401,E401  (the run needs these two)
EOF

# -- 2. the device ------------------------------------------------------------------------------
{ nvidia-smi || echo "(no nvidia-smi)"; } 2>&1 | tee -a "$LOG"
"$PY" -c "import jax; print('jax.devices():', jax.devices())" 2>&1 | tee -a "$LOG"

# -- 3. the run ---------------------------------------------------------------------------------
if [[ $FRESH == 1 ]]; then rm -rf "$STATE"; fi
mkdir -p "$STATE"
if [[ $FRESH == 0 && -z "$(ls -A "$STATE")" ]] && ls $RESUME.* >/dev/null 2>&1; then
  say "resuming from $(ls $RESUME.* | tr '\n' ' ')"
  cat $RESUME.* | tar -xz -C "$STATE"
fi
DEADLINE=$((START + BUDGET))
LIMIT=$((DEADLINE - $(date +%s) + 45))
say "running benchmarks/accelerator.py until +${BUDGET}s (hard limit ${LIMIT}s from now)"
rc=0
timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" benchmarks/accelerator.py "${TINY[@]}" \
  --deadline "$DEADLINE" --state-dir "$STATE" --out "$RESULTS" "${EXTRA[@]}" 2>&1 | tee -a "$LOG" || rc=$?
say "accelerator.py exited with $rc"

# -- 4. results and the resume archive ----------------------------------------------------------
# $OUT takes at most 8 files of 16 MiB, 64 MiB together: the archive (the 25 P-W states alone are
# ~27 MB) goes in 15 MB pieces accelerator_resume.tar.gz.00, .01, ...; the compile cache is kept
# in it only while the whole stays under 45 MB (it must travel back in `carry` beside wheelhouse/'s 7.5 MB, 64 MiB in all).
ADIR=$(mktemp -d)
ARCHIVE=$ADIR/accelerator_resume.tar.gz
tar -czf "$ARCHIVE" -C "$STATE" .
if [[ $(stat -c %s "$ARCHIVE") -gt 45000000 ]]; then
  tar -czf "$ARCHIVE" -C "$STATE" --exclude=./xla_cache .
fi
(cd "$ADIR" && split -b 15000000 -d -a 2 accelerator_resume.tar.gz accelerator_resume.tar.gz. && rm accelerator_resume.tar.gz)
say "resume archive: $(du -ch "$ADIR"/accelerator_resume.tar.gz.* | tail -1 | cut -f1) in $(ls "$ADIR" | wc -l) piece(s)"
cp "$LOG" "$RESULTS/accelerator.log" 2>/dev/null || true
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  for f in accelerator.md accelerator.json accelerator.log; do
    [[ -f $RESULTS/$f ]] && cp "$RESULTS/$f" "$OUT/"
  done
  cp "$LOG" "$OUT/accelerator.log"
  cp "$ADIR"/accelerator_resume.tar.gz.* "$OUT/"
  say "copied results and the resume archive to \$OUT"
else
  say "resume archive left in $ADIR"
fi
say "done in $(( $(date +%s) - START )) s; results in $RESULTS"
exit "$rc"

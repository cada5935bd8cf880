#!/usr/bin/env bash
# The GPU study: the grids in studies/gpu/ as parallel sweeps sharing one workspace, then the report.
# Usage: bash scripts/gpu_study.sh OUTDIR   (BUDGET = seconds per sweep, default 440; sweeps resume)
# Writes OUTDIR/report.tgz (findings-gpu.md, figures, logs) and OUTDIR/workspace-lite.tgz.part-aa,
# -ab, ... (the registry and every run's JSON/PNG files, no weights, in 15 MB pieces because the
# device tool brings back files of at most 16 MB) so the report can be regenerated elsewhere:
#   cat OUTDIR/workspace-lite.tgz.part-* | tar xz -C /tmp/mivis-gpu
set -u
OUTDIR=${1:?usage: gpu_study.sh OUTDIR}
BUDGET=${BUDGET:-440}
W=${MIVIS_WORKSPACE:-/tmp/mivis-gpu}
mkdir -p "$OUTDIR/report/logs"
t0=$(date +%s)
# shared steps first, so the parallel sweeps reuse them instead of racing to make them
python3 -m mivis --workspace "$W" train --role eval --arch vgg11 --lr 0.001 --epochs 30 --image-size 32 \
  > "$OUTDIR/report/logs/eval.log" 2>&1
python3 -m mivis --workspace "$W" prior import orl32-gmi >> "$OUTDIR/report/logs/eval.log" 2>&1
n=$(ls studies/gpu/*.toml | wc -l)
export OMP_NUM_THREADS=$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))  # parallel sweeps must not oversubscribe the CPU
for g in studies/gpu/*.toml; do
  timeout "$BUDGET" python3 -m mivis --workspace "$W" sweep "$g" > "$OUTDIR/report/logs/$(basename "$g" .toml).log" 2>&1 &
done
wait
names=$(python3 -c "import glob,tomllib;print(' '.join(tomllib.load(open(f,'rb'))['name'] for f in sorted(glob.glob('studies/gpu/*.toml'))))")
present=""
for n in $names; do [ -f "$W/sweeps/$n.json" ] && present="$present $n"; done
dev=$(python3 -c "import torch;print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')")
python3 -m mivis --workspace "$W" report $present --out "$OUTDIR/report/findings-gpu.md" \
  --title "What mivis finds on the embedded ORL data (GPU run)" \
  --notes "Run on one $dev by scripts/gpu_study.sh in $(( $(date +%s) - t0 )) s wall time (sweeps capped at $BUDGET s each; unfinished trials are left out, and a rerun resumes them)."
tar czf "$OUTDIR/report.tgz" -C "$OUTDIR" report
tar czf - -C "$W" --exclude='*.safetensors' . | split -b 15M - "$OUTDIR/workspace-lite.tgz.part-"
rm -rf "$OUTDIR/report"

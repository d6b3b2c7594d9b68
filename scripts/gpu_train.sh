#!/usr/bin/env bash
# Train on a lent GPU (the `device` tool): several configurations side by side on one GPU,
# then export the best and benchmark the encoder. Expects .gpu/encoder (fp16 copy of the
# packaged MiniLM) and .gpu/data (the shared training files) carried in; results go to $OUT.
#   CONFIGS="name:extra flags;name2:..."   (default: the three topic-weighting settings)
set -euo pipefail
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
CONFIGS=${CONFIGS:-"sqrt_inv:--topic-weighting sqrt_inv;none:--topic-weighting none;inv:--topic-weighting inv"}
common="--data-dir .gpu/data --encoder .gpu/encoder --patience 3 --version finsent-minilm-v1"
names=()
IFS=';' read -ra cfgs <<< "$CONFIGS"
for c in "${cfgs[@]}"; do
  name=${c%%:*}; names+=("$name")
  python -m finsent.cli train --output runs/$name $common --epochs ${EPOCHS:-8} ${c#*:} > runs-$name.log 2>&1 &
done
wait
for n in "${names[@]}"; do echo "== $n"; tail -2 runs-$n.log; done
best=$(python -c "import json,sys; print(max(sys.argv[1:], key=lambda n: json.load(open(f'runs/{n}/dev_metrics.json'))['selection']))" "${names[@]}")
echo "best: $best"; ln -s runs/$best best
tar czf $OUT/runs.tgz runs/*/training.json runs/*/dev_metrics.json runs/*/finsent.json runs-*.log
split -b 15M best/model.safetensors $OUT/weights.part.
if [ -z "${SKIP_BENCH:-}" ]; then
  python -m finsent.cli export --model best --no-int8 2>&1 | tail -3
  python bench/gpu_encoder.py --model best --texts-from .gpu/data 2>&1 | tee $OUT/gpu_bench.md
fi

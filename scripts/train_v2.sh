#!/usr/bin/env bash
# Model v2, reproducible from this one command (`make model-v2`): teacher → soft labels → student
# → int8 graph with its near-tie recheck margin → dev evaluation → model card, v1 beside v2.
# Every step resumes: the teacher's lower-layer cache and checkpoints live under $RUN.
# v2 trained on PhraseBank too (--data nc): it is non-commercial. v3: scripts/train_v3.sh.
#   DATA=../shared/data (default: FINSENT_DATA_DIR, else ../shared/data) RUN=var/v2 OUT=var/v2/finsent-minilm-v2 scripts/train_v2.sh
# On a 2-core CPU: teacher cache ~6 min, 3 teacher epochs ~6 min each, student ~3 min per epoch.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-${FINSENT_DATA_DIR:-../shared/data}}
RUN=${RUN:-var/v2}
OUT=${OUT:-$RUN/finsent-minilm-v2}
SEED=${SEED:-13}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
finsent() { "$PY" -m finsent.cli "$@"; }

finsent teacher fetch --dest var/teacher/all-mpnet-base-v2
finsent teacher train --output "$RUN/teacher" --data nc --data-dir "$DATA" --seed "$SEED" --resume \
  --frozen-layers ${TEACHER_FROZEN:-8} --epochs ${TEACHER_EPOCHS:-3}

# the student: the packaged MiniLM, trained on the teacher's soft labels for both heads on every
# text plus the hard labels where they exist (the v1 recipe otherwise); bf16 autocast on a CPU
finsent train --output "$OUT" --data nc --data-dir "$DATA" --teacher "$RUN/teacher/logits.npz" \
  --distill-alpha ${ALPHA:-0.5} --distill-temperature ${TEMPERATURE:-2} \
  --lr 1.2e-4 --batch-size 64 --label-smoothing 0.1 --epochs ${EPOCHS:-6} --patience 3 --seed "$SEED" \
  --cpu-bf16 --resume --version finsent-minilm-v2

# the int8 recheck margin is chosen on FiQA sentences: neither trained on nor in the dev split
"$PY" - "$DATA" "$RUN/calibration.txt" <<'EOF'
import json, sys
from pathlib import Path
texts = [v["sentence"].replace("\n", " ").strip() for f in ("headline", "post")
         for v in json.loads((Path(sys.argv[1]) / f"fiqa_2018_task1/task1_{f}_ABSA_train.json").read_text()).values()]
Path(sys.argv[2]).write_text("\n".join(t for t in texts if t) + "\n")
EOF
finsent export --model "$OUT" --calibrate "$RUN/calibration.txt"
# v1 for the side-by-side card: from the last commit that shipped it (its weights left the tree with v2)
V1=${V1:-$RUN/v1/models/artifacts/finsent-minilm-v1}
if [ ! -d "$V1" ]; then mkdir -p "$RUN/v1" && git archive ab69ace models/artifacts/finsent-minilm-v1 | tar -x -C "$RUN/v1"; fi
"$PY" scripts/v2_card.py --v1 "$V1" --v2 "$OUT" --teacher "$RUN/teacher" --data-dir "$DATA"
echo "model v2: $OUT (MODEL_CARD.md, dev_metrics.json)"

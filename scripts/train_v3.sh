#!/usr/bin/env bash
# Model v3 from one command (`make model-v3`; `make model-nc` for the PhraseBank variant):
#   teacher fetch → teacher train, in sittings → (ensemble) soft labels → student → int8 export
#   with its recheck margin → evaluations → model card (use allowed derived from the files' licences).
# Every step resumes and is skipped when its output exists, so run it again after a sitting ends
# (exit 75) or after any interruption; it goes on where it stopped.
#   SELECTION=commercial (default: the MIT Twitter sets only) | nc (+ PhraseBank 50Agree: non-commercial)
#   SITTING_MINUTES=120   end each teacher sitting after this long (0 = no limit); then run again
#   TEACHER_SEEDS="13 14 15"  an ensemble of teachers (their logits averaged); default one, seed 13
#   UNFREEZE=4,8,12 TEACHER_EPOCHS=4 EPOCHS=6 DEVICE=auto LIMIT=0 (LIMIT>0: a smoke run on N examples)
#   DATA=../shared/data (default FINSENT_DATA_DIR) RUN=var/v3 OUT=$RUN/finsent-minilm-v3
# Times per step on a 2-core CPU and on a GPU: docs/model.md ("Model v3").
set -euo pipefail
PY=${PY:-.venv/bin/python}
SELECTION=${SELECTION:-commercial}
case "$SELECTION" in
  commercial) NAME=finsent-minilm-v3 ;;
  nc) NAME=finsent-minilm-v3-nc ;;
  *) echo "SELECTION must be commercial or nc, not '$SELECTION'" >&2; exit 2 ;;
esac
DATA=${DATA:-${FINSENT_DATA_DIR:-../shared/data}}
RUN=${RUN:-var/v3-$SELECTION}
OUT=${OUT:-$RUN/$NAME}
SEED=${SEED:-13}
TEACHER_SEEDS=${TEACHER_SEEDS:-$SEED}
LIMIT=${LIMIT:-0}
DEVICE=${DEVICE:-auto}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
finsent() { "$PY" -m finsent.cli "$@"; }
step() { echo "== $(date -u +%H:%M:%S) $*"; }
took() { echo "   took $(( $(date +%s) - $1 )) s"; }

t=$(date +%s); step "teacher fetch"
finsent teacher fetch --dest var/teacher/all-mpnet-base-v2; took "$t"

# the teacher(s): a full fine-tune by the unfreeze schedule, checkpointed every few hundred steps
logits=()
for s in $TEACHER_SEEDS; do
  dir=$RUN/teacher-s$s
  logits+=(--teacher "$dir/logits.npz")
  if [ -f "$dir/logits.npz" ]; then step "teacher seed $s: done ($dir/logits.npz)"; continue; fi
  t=$(date +%s); step "teacher seed $s → $dir (unfreeze ${UNFREEZE:-4,8,12}, ${TEACHER_EPOCHS:-4} epochs)"
  rc=0
  finsent teacher train --output "$dir" --data "$SELECTION" --data-dir "$DATA" --seed "$s" --split-seed "$SEED" --resume \
    --unfreeze "${UNFREEZE:-4,8,12}" --epochs "${TEACHER_EPOCHS:-4}" --checkpoint-every "${CHECKPOINT_EVERY:-300}" \
    --max-minutes "${SITTING_MINUTES:-0}" --limit "$LIMIT" --device "$DEVICE" || rc=$?
  took "$t"
  if [ "$rc" = 75 ]; then echo "teacher sitting over: run this again to go on from its checkpoint"; exit 75; fi
  [ "$rc" = 0 ] || exit "$rc"
done

# the student: the packaged MiniLM on the teacher(s)' soft labels for both heads on every text
if [ -f "$OUT/model.safetensors" ] && [ -f "$OUT/training.json" ]; then step "student: done ($OUT)"; else
  t=$(date +%s); step "student → $OUT"
  finsent train --output "$OUT" --data "$SELECTION" --data-dir "$DATA" "${logits[@]}" \
    --distill-alpha "${ALPHA:-0.5}" --distill-temperature "${TEMPERATURE:-2}" \
    --lr 1.2e-4 --batch-size 64 --label-smoothing 0.1 --epochs "${EPOCHS:-6}" --patience 3 --seed "$SEED" \
    --cpu-bf16 --resume --limit "$LIMIT" --device "$DEVICE" --version "$NAME"
  took "$t"
fi

# int8 graph; its near-tie recheck margin (the fp32 recheck that keeps argmax agreement ≥ 99.5 %) is
# chosen on text the model did not train on and whose licence allows it: the MIT sets' dev split. On
# training text the model is surer, and the first v3's margin chosen there (0.10) agreed on 98.2 % of
# held-out text alone, where 99.5 % needed 0.16. The margin trades speed for agreement with fp32; it
# moves no accuracy reported on dev beyond that. CALIBRATION=FILE overrides
if [ -f "$OUT/model.int8.onnx" ]; then step "export: done"; else
  t=$(date +%s); step "export + calibration"
  CAL=${CALIBRATION:-$RUN/calibration-dev.txt}
  [ -f "$CAL" ] || "$PY" - "$DATA" "$CAL" "$SEED" <<'EOF_PY'
import sys
from pathlib import Path
from models.training import TrainConfig, load_examples
_, dev, _ = load_examples(TrainConfig(output="-", data_dir=sys.argv[1], data="commercial", seed=int(sys.argv[3])))
Path(sys.argv[2]).write_text("\n".join(e.text.replace("\n", " ") for e in dev) + "\n")
EOF_PY
  finsent export --model "$OUT" --calibrate "$CAL"
  took "$t"
fi

# evaluations through the runtime: the model's own dev split; for the commercial model PhraseBank
# is out of domain and never trained on, so its whole 50 %- and all-agree files are held out
evals=()
ev() { local name=$1; shift; evals+=(--eval "$OUT/$name.json")
  if [ -f "$OUT/$name.json" ]; then step "evaluate $name: done"; else
    t=$(date +%s); step "evaluate $name"; finsent evaluate --model "$OUT" --output "$OUT/$name" "$@" > /dev/null; took "$t"; fi; }
ev eval-dev --data-dir "$DATA"
if [ "$SELECTION" = commercial ]; then
  ev eval-phrasebank-50 --source "sentiment:phrasebank:$DATA/financial_phrasebank/Sentences_50Agree.txt"
  ev eval-phrasebank-all --source "sentiment:phrasebank:$DATA/financial_phrasebank/Sentences_AllAgree.txt"
fi

step "model card"
"$PY" scripts/model_card.py --model "$OUT" "${evals[@]}" --command "${CARD_COMMAND:-make model-$([ "$SELECTION" = nc ] && echo nc || echo v3)}"
echo "model v3 ($SELECTION): $OUT (MODEL_CARD.md, dev_metrics.json, eval-*.json)"

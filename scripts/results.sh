#!/usr/bin/env bash
# Re-runs every results row committed under results/ with the budgets used for RESULTS.md on a 2-core CPU,
# then rebuilds RESULTS.md. Rows whose trials or budget are below the paper's are marked truncated by the
# report. A full-budget run of a row is `python -m experiments run configs/<row>.toml`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() {  # run CONFIG [--set k=v ...]
  local name=$1; shift
  [ -f "results/$name/summary.json" ] && [ -z "${FORCE:-}" ] && { echo "skip $name (done)"; return; }
  rm -rf "results/$name"
  $PY -m experiments run "configs/$name.toml" --no-progress --out "results/$name" "$@" || echo "FAILED $name"
}
run exp6a
run exp3a_t100_n3
run exp3a_t100_n1
run exp3b_t100_n3
run exp3b_t100_n1
run exp4_adding_t100
run exp6b
run exp5_multiplication_nseq140
run exp5_multiplication_nseq13
run exp3c_t100_n3
run exp3c_t100_n1
run exp2c_q50_p50
run exp2c_q100_p100
run exp1_reber_3x2_lr0p5
run exp1_reber_4x1_lr0p5
run exp1_reber_3x2_lr0p2
run exp1_reber_3x2_lr0p1
run exp1_reber_4x1_lr0p1
run exp2a
run exp2b
run modern_lstm_adding_t100
run modern_lstm_order6a
for row in modern_gru_adding_t100 modern_gru_order6a modern_mgu_adding_t100 modern_mgu_order6a \
  modern_elman_adding_t100 modern_elman_order6a; do
  run $row
done
run exp2c_q200_p200
run exp4_adding_t500
run exp2c_q500_p500
run exp2c_q1000_p1000
run exp2c_q1000_p500
run exp2c_q1000_p200
run exp2c_q1000_p100
run exp2c_q1000_p50
run exp3a_t1000_n3
run exp3b_t1000_n1
run exp4_adding_t1000
# The modern cells on two benchmarks of the later literature (Arjovsky et al. 2016; no paper row).
run modern_lstm_adding_modern_t100
run modern_gru_adding_modern_t100
run modern_mgu_adding_modern_t100
run modern_elman_adding_modern_t100
run modern_lstm_copy_t100
run modern_gru_copy_t100
run modern_mgu_copy_t100
run modern_elman_copy_t100
# Ablations: the paper's set-up with one change each (see each config's header and results/NOTES.md).
run ablation_exp4_adding_t100_linear
run ablation_exp4_adding_t500_linear
run ablation_exp5_multiplication_nseq13_linear
run ablation_exp1_reber_6x2_lr0p5
run ablation_exp2c_q100_p100_hidentity
$PY -m experiments report results/*/ --out RESULTS.md --notes results/NOTES.md

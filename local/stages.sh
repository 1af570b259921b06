# shellcheck shell=bash
# The stages every recipe shares, with the same numbers everywhere. A recipe's run.sh holds its
# corpus's data stages 0-3 (its own `if should_run N "$data_dir"` blocks, or for a corpus that
# lhotse downloads and prepares, the stage functions of local/data_stages.sh; a corpus with fewer
# skips numbers, one with more does several steps inside one stage) and then calls
#
#   stage_train [OVERRIDE...]      4  python -m asr_recipes.bin.train
#   stage_average                  5  python -m asr_recipes.bin.average (skipped with --checkpoints)
#   stage_decode [OVERRIDE...]     6  python -m asr_recipes.bin.decode, greedy + modified beam search
#   stage_results TITLE            7  python -m asr_recipes.bin.results -> <results-md>
#   stage_export                   8  python -m asr_recipes.bin.export -> <exp-dir>/onnx
#   stage_lm [OVERRIDE...]         9  python -m asr_recipes.bin.train_lm, token_bigram, export_lm -> <lm-dir>
#   stage_lm_decode TITLE [OVERRIDE...]
#                                 10  python -m asr_recipes.bin.decode with the LM, bin.results -> <results-md>
#
# OVERRIDEs are the corpus's own Hydra overrides (e.g. "data.musan.parts=[]"; for stage_lm its
# LM text, dev text and test transcripts to exclude); they come after the shared ones and before
# --model, --train-args / --decode-args / --lm-args, which win. The functions read the options of
# local/recipe_options.sh (after resolve_recipe_options), lang_dir, the tokenizer directory that
# the recipe's stage 3 writes, and train_transcripts, the Hydra list of its training parts'
# supervision manifests (stage 1), from which stage 9 counts the LODR bigram. Each stage runs
# only when selected by --stage/--stop-stage and not done yet (<exp-dir>/.done/stage-N), and
# leaves its marker.

# The lines `run.sh --help` shows for stages 4-10 (a recipe's help_message lists 0-3 above them).
SHARED_STAGES_HELP="  4 train: train the transducer (with --ngpu N: torchrun; --init-from CKPT: fine-tune it); rerunning resumes from the newest checkpoint
  5 average: average the models of the last --avg epochs up to --epoch (skipped with --checkpoints)
  6 decode: greedy and modified beam search of the test parts, scored (WER or CER)
  7 results: the run's table of error rates, speed and model, RESULTS.md in the exp dir (--results-md)
  8 export: ONNX for sherpa-onnx (fp32 and int8, checked against PyTorch) in the exp dir's onnx/
  9 lm: a token LSTM LM (--lm-model) on the LM text (--lm-text), the LODR bigram of the training transcripts, both exported for sherpa-onnx, in --lm-dir
  10 lm_decode: modified beam search of the test parts with the stage 9 LM (--lm-scale, --lodr-scale), scored; the results table rewritten with it"

# Checks the shared options, makes the paths absolute (Python gets absolute paths, so the stages
# do not depend on the caller's directory) and, with --model NAME, switches to the experiment's
# variant for that model where one exists. Call it right after parse_options.sh.
resolve_recipe_options() {
  case "$streaming" in
    true | false) ;;
    *) die "--streaming must be true or false, not '$streaming'" ;;
  esac
  [[ -z $ngpu || $ngpu =~ ^[1-9][0-9]*$ ]] || die "--ngpu must be a number of processes (or empty: no torchrun), not '$ngpu'"
  # a recipe's settings for another model (e.g. its optimizer): conf/experiment/<experiment>_<model>.yaml
  if [ -n "$model" ] && [ -f "$ASR_RECIPES_ROOT/conf/experiment/${experiment}_${model}.yaml" ]; then
    experiment=${experiment}_$model
  fi
  dl_dir=$(realpath -m "$dl_dir")
  data_dir=$(realpath -m "$data_dir")
  exp_dir=$(realpath -m "$exp_dir")
  results_md=$(realpath -m "${results_md:-$exp_dir/RESULTS.md}")
  lm_dir=$(realpath -m "${lm_dir:-$exp_dir/lm}")
  [ -z "$lm_text" ] || lm_text=$(realpath -m "$lm_text")
  [ -z "$init_from" ] || init_from=$(realpath -m "$init_from")
}

# The decodings of stages 6 and 10, one line each: the weights (epoch=E avg=A, or checkpoint=FILE
# for each of --checkpoints), with chunk_size=C for each of --decode-chunks (streaming models).
_decodings() {
  local files=() weights=() w chunk
  read -r -a files <<< "$checkpoints"
  weights=("epoch=$epoch avg=$avg")
  [ ${#files[@]} -eq 0 ] || weights=("${files[@]/#/checkpoint=$exp_dir/}")
  for w in "${weights[@]}"; do
    for chunk in ${decode_chunks:-recorded}; do  # recorded: the chunk the checkpoint records
      if [ "$chunk" = recorded ]; then echo "$w"; else echo "$w chunk_size=$chunk"; fi
    done
  done
}

# _decode_each ARG...: bin.decode once per line of _decodings, for stages 6 and 10. ARGs (the
# stage's settings, then the recipe's overrides) come after that line's weights and chunk size and
# before --decode-args, which win.
_decode_each() {
  local extra=() runs=() choice=() run
  read -r -a extra <<< "$decode_args"
  mapfile -t runs < <(_decodings)
  for run in "${runs[@]}"; do
    read -r -a choice <<< "$run"
    "$python" -m asr_recipes.bin.decode experiment="$experiment" exp_dir="$exp_dir" "${choice[@]}" "$@" "${extra[@]}"
  done
}

stage_train() {
  should_run 4 "$exp_dir" || return 0
  local launcher=() extra=() model_choice=() init=()
  if [ -n "$ngpu" ]; then
    log "Stage 4: train in $exp_dir with torchrun, $ngpu process(es) per node (rerunning resumes)"
    read -r -a launcher <<< "$torchrun_args"
    launcher=(-m torch.distributed.run --nproc_per_node "$ngpu" "${launcher[@]}")
  else
    log "Stage 4: train in $exp_dir (rerunning resumes from the newest checkpoint)"
  fi
  read -r -a extra <<< "$train_args"
  [ -z "$model" ] || model_choice=("model=$model")
  # fine-tuning: the checkpoint's architecture and weights (the model settings are then not used)
  [ -z "$init_from" ] || init=("init_from=$init_from")
  "$python" "${launcher[@]}" -m asr_recipes.bin.train experiment="$experiment" exp_dir="$exp_dir" \
    tokenizer_dir="$lang_dir" data.manifest_dir="$data_dir/fbank" "$@" "model.causal=$streaming" \
    "${model_choice[@]}" "${init[@]}" "${extra[@]}"
  mark_done "$exp_dir" 4
}

stage_average() {
  [ -z "$checkpoints" ] || return 0
  should_run 5 "$exp_dir" || return 0
  log "Stage 5: average epoch $epoch over the last $avg epochs (epoch=last: the newest epoch)"
  "$python" -m asr_recipes.bin.average exp_dir="$exp_dir" epoch="$epoch" avg="$avg"
  mark_done "$exp_dir" 5
}

stage_decode() {
  should_run 6 "$exp_dir" || return 0
  log "Stage 6: decode the test parts (greedy and modified beam search) into $exp_dir/<method>/"
  _decode_each "methods=[greedy_search,modified_beam_search]" beam="$beam" max_sym_per_frame="$max_sym_per_frame" \
    data.manifest_dir="$data_dir/fbank" "$@" streaming="$streaming"
  mark_done "$exp_dir" 6
}

stage_results() {
  [ $# -eq 1 ] || die "usage: stage_results TITLE"
  should_run 7 "$exp_dir" || return 0
  log "Stage 7: the results table in $results_md"
  "$python" -m asr_recipes.bin.results exp_dir="$exp_dir" results_md="$results_md" "title='$1'"
  mark_done "$exp_dir" 7
}

stage_export() {
  should_run 8 "$exp_dir" || return 0
  log "Stage 8: export for sherpa-onnx (fp32 + int8 ONNX, checked against PyTorch) into $exp_dir/onnx"
  local files=() ckpt
  read -r -a files <<< "$checkpoints"
  if [ ${#files[@]} -gt 0 ]; then
    ckpt=$exp_dir/${files[-1]}  # the last of --checkpoints
  elif [ "$epoch" = last ]; then
    # the average stage 5 wrote (its epoch is the newest one, e.g. the one a time budget reached)
    ckpt=$(ls -t "$exp_dir"/averaged-epoch-*-avg-*.pt | head -n 1)
  else
    ckpt=$exp_dir/averaged-epoch-$epoch-avg-$avg.pt
  fi
  "$python" -m asr_recipes.bin.export checkpoint="$ckpt" out_dir="$exp_dir/onnx" int8=true
  mark_done "$exp_dir" 8
}

stage_lm() {
  should_run 9 "$exp_dir" || return 0
  log "Stage 9: the $lm_model token LM and the LODR bigram in $lm_dir (rerunning resumes), exported to $lm_dir/onnx"
  local extra=() lm
  read -r -a extra <<< "$lm_args"
  "$python" -m asr_recipes.bin.train_lm lm_dir="$lm_dir" tokenizer_dir="$lang_dir" lm_model="$lm_model" "$@" \
    "${extra[@]}"
  "$python" -m asr_recipes.bin.token_bigram tokenizer_dir="$lang_dir" manifests="$train_transcripts" \
    out="$lm_dir/lodr-bigram.json"
  lm=$lm_dir/$(cat "$lm_dir/latest.txt")  # the newest LM checkpoint
  "$python" -m asr_recipes.bin.export_lm lm="$lm" out_dir="$lm_dir/onnx" bigram="$lm_dir/lodr-bigram.json"
  mark_done "$exp_dir" 9
}

stage_lm_decode() {
  [ $# -ge 1 ] || die "usage: stage_lm_decode TITLE [OVERRIDE...]"
  should_run 10 "$exp_dir" || return 0
  local title=$1 lodr=() lm
  shift
  [ -f "$lm_dir/latest.txt" ] || die "no LM in $lm_dir: run stage 9 first (--stage 9 --stop-stage 9)"
  lm=$lm_dir/$(cat "$lm_dir/latest.txt")
  log "Stage 10: modified beam search with the LM ${lm#"$exp_dir/"} (lm_scale $lm_scale, lodr_scale $lodr_scale)" \
    "into $exp_dir/modified_beam_search/"
  [[ $lodr_scale =~ ^[0.]+$ ]] || lodr=("lodr_bigram=$lm_dir/lodr-bigram.json" "lodr_scale=$lodr_scale")
  _decode_each "methods=[modified_beam_search]" beam="$beam" max_sym_per_frame="$max_sym_per_frame" lm="$lm" \
    lm_scale="$lm_scale" "${lodr[@]}" data.manifest_dir="$data_dir/fbank" "$@" streaming="$streaming"
  "$python" -m asr_recipes.bin.results exp_dir="$exp_dir" results_md="$results_md" "title='$title'"
  mark_done "$exp_dir" 10
}

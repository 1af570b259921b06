# shellcheck shell=bash
# Data stages 0-2 of a recipe whose corpus lhotse downloads and prepares (asr_recipes.bin.prepare
# corpus=<name>, see asr_recipes.data.corpora), with MUSAN noise optional (--use-musan). A recipe
# sources it after local/recipe_options.sh, right above its own options, among them
# `use_musan=false`; it defines the Hydra list of its corpus's parts, `parts` (e.g.
# "[train,dev,test]"), and after resolve_recipe_options calls
#
#   resolve_musan_option            checks --use-musan; sets musan_override, the data.musan.parts
#                                   override for stage_train (all of MUSAN, or none)
#   stage_download CORPUS WHAT [OVERRIDE...]
#                                0  python -m asr_recipes.bin.prepare download=true: the parts of
#                                   CORPUS missing from <dl-dir> (and MUSAN with --use-musan true)
#   stage_manifests CORPUS       1  python -m asr_recipes.bin.prepare: lhotse manifests in
#                                   <data-dir>/manifests (and MUSAN's with --use-musan true)
#   stage_fbank CORPUS TRAIN     2  python -m asr_recipes.bin.fbank: features in <data-dir>/fbank,
#                                   the training parts with speed perturbation 0.9/1.1 (and MUSAN's
#                                   10 s noise cuts with --use-musan true)
#
# CORPUS is the corpus's name in asr_recipes.data.corpora (e.g. librispeech); WHAT says in stage
# 0's log line what is downloaded and where; OVERRIDEs are the corpus's own Hydra overrides of
# bin.prepare (e.g. "lm_text=true"); TRAIN names the speed-perturbed parts in stage 2's log line.
# Like those of local/stages.sh, each stage runs only when selected by --stage/--stop-stage and
# not done yet, here <data-dir>/.done/stage-N, and leaves its marker.

resolve_musan_option() {
  case "$use_musan" in
    true) musan_override="data.musan.parts=[music,speech,noise]" ;;
    false) musan_override="data.musan.parts=[]" ;;
    *) die "--use-musan must be true or false, not '$use_musan'" ;;
  esac
}

stage_download() {
  [ $# -ge 2 ] || die "usage: stage_download CORPUS WHAT [OVERRIDE...]"
  should_run 0 "$data_dir" || return 0
  local corpus=$1
  log "Stage 0: download $2"
  shift 2
  "$python" -m asr_recipes.bin.prepare corpus="$corpus" download=true dl_dir="$dl_dir" \
    out_dir="$data_dir/manifests" parts="$parts" "$@"
  if [ "$use_musan" = true ]; then
    "$python" -m asr_recipes.bin.prepare corpus=musan download=true dl_dir="$dl_dir" \
      out_dir="$data_dir/manifests"
  fi
  mark_done "$data_dir" 0
}

stage_manifests() {
  [ $# -eq 1 ] || die "usage: stage_manifests CORPUS"
  should_run 1 "$data_dir" || return 0
  log "Stage 1: lhotse manifests in $data_dir/manifests"
  "$python" -m asr_recipes.bin.prepare corpus="$1" dl_dir="$dl_dir" \
    out_dir="$data_dir/manifests" parts="$parts"
  if [ "$use_musan" = true ]; then
    "$python" -m asr_recipes.bin.prepare corpus=musan dl_dir="$dl_dir" out_dir="$data_dir/manifests"
  fi
  mark_done "$data_dir" 1
}

stage_fbank() {
  [ $# -eq 2 ] || die "usage: stage_fbank CORPUS TRAIN"
  should_run 2 "$data_dir" || return 0
  log "Stage 2: fbank features in $data_dir/fbank (speed perturbation 0.9/1.1 of $2)"
  if [ "$use_musan" = true ]; then  # 10 s noise cuts
    OMP_NUM_THREADS=1 "$python" -m asr_recipes.bin.fbank corpus=musan \
      manifest_dir="$data_dir/manifests" out_dir="$data_dir/fbank" num_jobs="$nj"
  fi
  OMP_NUM_THREADS=1 "$python" -m asr_recipes.bin.fbank corpus="$1" \
    manifest_dir="$data_dir/manifests" out_dir="$data_dir/fbank" parts="$parts" \
    speed_perturb=true num_jobs="$nj"
  mark_done "$data_dir" 2
}

#!/usr/bin/env bash
# LibriSpeech (960 h or train-clean-100): icefall's pruned_transducer_stateless2 setup
# (conf/experiment/librispeech.yaml), BPE 500, training with torchrun on --ngpu GPUs.
# `bash egs/librispeech/run.sh --help` lists the stages and options.
#
#   bash egs/librispeech/run.sh                                   # download ... export
#   bash egs/librispeech/run.sh --dl-dir /data --full-libri false --ngpu 4
#   bash egs/librispeech/run.sh --stage 4 --torchrun-args \
#     "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint host0:29400 --rdzv-id ls960"
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../local/common.sh"
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$ASR_RECIPES_ROOT/local/stages.sh"
. "$ASR_RECIPES_ROOT/local/recipe_options.sh"

help_message="egs/librispeech: LibriSpeech 960 h or train-clean-100, icefall's pruned_transducer_stateless2
setup (conf/experiment/librispeech.yaml), BPE 500, trained with torchrun.
Stages (--stage N --stop-stage M; a finished stage leaves <data-dir>/.done/stage-N (0-3) or
<exp-dir>/.done/stage-N (4-10): delete it to redo that stage):
  0 download: the LibriSpeech parts missing from the dl dir (and MUSAN with --use-musan true), the LM text librispeech-lm-norm.txt.gz (unless --lm-text)
  1 manifests: lhotse manifests (and MUSAN's with --use-musan true)
  2 fbank: features; the training parts with speed perturbation 0.9/1.1 (and MUSAN's 10 s noise cuts)
  3 tokenizer: BPE (--vocab-size) trained on the train-clean-100 transcripts
$SHARED_STAGES_HELP"

. "$ASR_RECIPES_ROOT/local/data_stages.sh"  # stages 0-2 of a downloaded corpus; they read use_musan and parts
full_libri=true                  # true: train on 960 h; false: train-clean-100 only
use_musan=false                  # mix MUSAN noise into training batches
vocab_size=500                   # BPE vocabulary size
ngpu=8                           # training processes per node (icefall's result: 8 GPUs x 300 s batches)
epoch=26                         # decode this epoch's model (= trainer.num_epochs in conf/experiment/librispeech.yaml)
avg=8                            # ... averaged over this many epochs
lm_model=librispeech             # stage 9: icefall's LibriSpeech RNN-LM size (3 x 2048 LSTM)
. "$ASR_RECIPES_ROOT/local/parse_options.sh"
resolve_recipe_options
resolve_musan_option

lang_dir=$data_dir/lang_bpe_$vocab_size
case "$full_libri" in
  true) train_parts="train-clean-100,train-clean-360,train-other-500"; hours="960 h" ;;
  false) train_parts="train-clean-100"; hours="100 h" ;;
  *) die "--full-libri must be true or false, not '$full_libri'" ;;
esac
parts="[$train_parts,dev-clean,dev-other,test-clean,test-other]"
manifests=$data_dir/manifests  # stage 1 writes them
# the training parts' supervision manifests, "[<manifests>/librispeech_supervisions_<part>.jsonl.gz,...]"
train_transcripts="[$manifests/librispeech_supervisions_${train_parts//,/.jsonl.gz,$manifests/librispeech_supervisions_}.jsonl.gz]"
lm_text_file=${lm_text:-$dl_dir/lm/librispeech-lm-norm.txt.gz}  # stage 0 downloads it unless --lm-text is given
lm_download=${lm_text:+false}  # stage 0 fetches the LM text unless --lm-text names a copy
lm_download=${lm_download:-true}

# Stages 0-2 (local/data_stages.sh): LibriSpeech and, with --use-musan true, MUSAN.
stage_download librispeech "LibriSpeech $parts to $dl_dir (parts on disk are skipped)" lm_text="$lm_download"
stage_manifests librispeech
stage_fbank librispeech "$train_parts"

if should_run 3 "$data_dir"; then
  log "Stage 3: BPE $vocab_size tokenizer in $lang_dir (train-clean-100 transcripts)"
  "$python" -m asr_recipes.bin.tokenizer \
    cuts="$data_dir/manifests/librispeech_supervisions_train-clean-100.jsonl.gz" \
    out_dir="$lang_dir" kind=bpe vocab_size="$vocab_size"
  mark_done "$data_dir" 3
fi

# Stages 4-10 (local/stages.sh) with this corpus's overrides; the LM's dev text (its perplexity in
# the log) and the test transcripts it must never see.
title="LibriSpeech $hours, pruned transducer (icefall pruned_transducer_stateless2 setup)"
stage_train "data.train_parts=[$train_parts]" "$musan_override"
stage_average
stage_decode "data.test_parts=[test-clean,test-other]"
stage_results "$title"
stage_export
stage_lm "text.files=[$lm_text_file]" \
  "dev.manifests=[$manifests/librispeech_supervisions_dev-clean.jsonl.gz,$manifests/librispeech_supervisions_dev-other.jsonl.gz]" \
  "exclude_manifests=[$manifests/librispeech_supervisions_test-clean.jsonl.gz,$manifests/librispeech_supervisions_test-other.jsonl.gz]"
stage_lm_decode "$title" "data.test_parts=[test-clean,test-other]"

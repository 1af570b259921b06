#!/usr/bin/env bash
# AISHELL-1 (178 h Mandarin): icefall's pruned_transducer_stateless2 setup
# (conf/experiment/aishell.yaml), ~4.3k character tokens, decoder context 1, CER scoring,
# training with torchrun on --ngpu GPUs. `bash egs/aishell/run.sh --help` lists the stages and options.
#
#   bash egs/aishell/run.sh                                       # download ... export
#   bash egs/aishell/run.sh --dl-dir /data --ngpu 1 --stage 1     # AISHELL-1 in /data/aishell
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../local/common.sh"
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$ASR_RECIPES_ROOT/local/stages.sh"
. "$ASR_RECIPES_ROOT/local/recipe_options.sh"

help_message="egs/aishell: AISHELL-1 (178 h Mandarin), icefall's pruned_transducer_stateless2 setup
(conf/experiment/aishell.yaml), character tokens, decoder context 1, CER; trained with torchrun.
Stages (--stage N --stop-stage M; a finished stage leaves <data-dir>/.done/stage-N (0-3) or
<exp-dir>/.done/stage-N (4-10): delete it to redo that stage):
  0 download: AISHELL-1 into the dl dir when missing (and MUSAN with --use-musan true)
  1 manifests: lhotse manifests (and MUSAN's with --use-musan true)
  2 fbank: features; train with speed perturbation 0.9/1.1 (and MUSAN's 10 s noise cuts)
  3 tokenizer: characters of the training transcripts, no word-boundary token
$SHARED_STAGES_HELP"

. "$ASR_RECIPES_ROOT/local/data_stages.sh"  # stages 0-2 of a downloaded corpus; they read use_musan and parts
use_musan=false                  # mix MUSAN noise into training batches
ngpu=2                           # training processes per node (icefall's result: 2 GPUs x 200 s batches)
epoch=73                         # decode this epoch's model (= trainer.num_epochs in conf/experiment/aishell.yaml)
avg=14                           # ... averaged over this many epochs
. "$ASR_RECIPES_ROOT/local/parse_options.sh"
resolve_recipe_options
resolve_musan_option

lang_dir=$data_dir/lang_char
parts="[train,dev,test]"         # lhotse's AISHELL-1 preparer reads all three splits anyway
manifests=$data_dir/manifests  # stage 1 writes them
train_transcripts="[$manifests/aishell_supervisions_train.jsonl.gz]"
lm_text_source=${lm_text:+text.files=[$lm_text]}  # the LM's text: --lm-text, or the training transcripts
lm_text_source=${lm_text_source:-text.manifests=$train_transcripts}

# Stages 0-2 (local/data_stages.sh): AISHELL-1 and, with --use-musan true, MUSAN.
stage_download aishell "AISHELL-1 to $dl_dir/aishell (skipped when on disk)"
stage_manifests aishell
stage_fbank aishell train

if should_run 3 "$data_dir"; then
  log "Stage 3: character tokenizer in $lang_dir (every training character, no word boundaries)"
  "$python" -m asr_recipes.bin.tokenizer cuts="$data_dir/manifests/aishell_supervisions_train.jsonl.gz" \
    out_dir="$lang_dir" kind=char word_boundary=false vocab_size=null
  mark_done "$data_dir" 3
fi

# Stages 4-10 (local/stages.sh) with this corpus's overrides; the LM's dev text (its perplexity in
# the log) and the test transcripts it must never see.
title="AISHELL-1, pruned transducer (icefall pruned_transducer_stateless2 setup), CER"
stage_train "$musan_override"
stage_average
stage_decode "data.test_parts=[dev,test]"
stage_results "$title"
stage_export
stage_lm "$lm_text_source" "dev.manifests=[$manifests/aishell_supervisions_dev.jsonl.gz]" \
  "exclude_manifests=[$manifests/aishell_supervisions_test.jsonl.gz]"
stage_lm_decode "$title" "data.test_parts=[dev,test]"

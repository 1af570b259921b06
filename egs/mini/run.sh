#!/usr/bin/env bash
# Demo recipe: synthesized English speech (espeak-ng + flite + sox, no download) in the
# LibriSpeech layout with generated noise, character tokens (one per 40 ms frame), the small
# Conformer transducer trained on a CPU for a fixed time (trainer.max_minutes in
# conf/experiment/mini.yaml). `bash egs/mini/run.sh --help` lists the stages and options.
#
#   bash egs/mini/run.sh                                  # everything (what `make demo` runs)
#   bash egs/mini/run.sh --stage 4 --stop-stage 4 --train-args "trainer.max_minutes=5"
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../local/common.sh"
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$ASR_RECIPES_ROOT/local/stages.sh"
. "$ASR_RECIPES_ROOT/local/recipe_options.sh"

help_message="egs/mini: synthesized English speech with generated noise, the small Conformer transducer
trained on a CPU for a fixed time (conf/experiment/mini.yaml); what \`make demo\` runs.
Stages (--stage N --stop-stage M; a finished stage leaves <data-dir>/.done/stage-N (0-3) or
<exp-dir>/.done/stage-N (4-10): delete it to redo that stage):
  0 synthesize: speech (espeak-ng and flite voices) and generated noise into the dl dir (LibriSpeech and MUSAN layouts), LM text from the sentence generator's training split
  1 manifests: lhotse manifests of the speech parts and of the noise
  2 fbank: features; the training part with speed perturbation 0.9/1.1 and reverberation
  3 tokenizer: characters (--token-kind) from the training transcripts
$SHARED_STAGES_HELP"

task=commands                    # synthesized task: commands (47 words) | sentences (~290 words)
size=full                        # corpus size: tiny (8/3/3 utterances) | full (3000/200/200) | N per split
seed=0                           # corpus synthesis seed
synth_args=""                    # extra Hydra overrides for synthesis, e.g. "flite_voices=[]" (espeak-ng only)
augment=true                     # speed perturbation + reverberation (fbank) and generated noise (training)
reverb_prob=0.2                  # with --augment true: fraction of training cuts reverberated
token_kind=char                  # tokenizer: char | bpe | unigram (conf/experiment/mini.yaml trains one letter per frame)
vocab_size=null                  # bpe/unigram: vocabulary size, e.g. 60; char: null (all characters)
nj=2                             # parallel jobs for synthesis and fbank
lm_sentences=5000                # stage 0: LM text, sentences of the generator's training split (none of a dev or test part)
lm_args="trainer.num_epochs=4 trainer.max_tokens=5000"  # stage 9: ~700k character predictions, a few CPU minutes
. "$ASR_RECIPES_ROOT/local/parse_options.sh"
resolve_recipe_options

lang_dir=$data_dir/lang_${token_kind}$([ "$token_kind" = char ] || echo "_$vocab_size")
manifests=$data_dir/manifests  # stage 1 writes them
train_transcripts="[$manifests/librispeech_supervisions_train-clean-100.jsonl.gz]"
lm_text_file=${lm_text:-$dl_dir/lm/$task-train-sentences.txt}  # stage 0 writes it unless --lm-text is given
# The parts a synthesized corpus has: seen voices, an unseen voice, seen voices in noise.
parts="[train-clean-100,dev-clean,dev-unseen,test-clean,test-unseen,test-other]"
case "$augment" in
  true) fbank_aug="speed_perturb=true reverb_prob=$reverb_prob"; noise_parts="[noise,speech]" ;;
  false) fbank_aug="speed_perturb=false reverb_prob=0"; noise_parts="[]" ;;
  *) die "--augment must be true or false, not '$augment'" ;;
esac

if should_run 0 "$data_dir"; then
  log "Stage 0: synthesize the $task corpus ($size) in $dl_dir/LibriSpeech, noise in $dl_dir/musan"
  read -r -a extra <<< "$synth_args"
  "$python" -m asr_recipes.bin.synthesize out_dir="$dl_dir" layout=librispeech task="$task" \
    size="$size" seed="$seed" num_jobs="$nj" "${extra[@]}"
  if [ -z "$lm_text" ]; then  # the corpus' seed: every sentence of its dev and test parts is left out
    "$python" -m asr_recipes.bin.synthesize_text out="$lm_text_file" task="$task" count="$lm_sentences" seed="$seed"
  fi
  mark_done "$data_dir" 0
fi

if should_run 1 "$data_dir"; then
  log "Stage 1: lhotse manifests in $data_dir/manifests"
  "$python" -m asr_recipes.bin.prepare corpus=librispeech dl_dir="$dl_dir" \
    out_dir="$data_dir/manifests" parts="$parts"
  "$python" -m asr_recipes.bin.prepare corpus=musan dl_dir="$dl_dir" \
    out_dir="$data_dir/manifests" "parts=[noise,speech]"
  mark_done "$data_dir" 1
fi

if should_run 2 "$data_dir"; then
  log "Stage 2: fbank features in $data_dir/fbank ($fbank_aug for train-clean-100)"
  read -r -a aug <<< "$fbank_aug"
  OMP_NUM_THREADS=1 "$python" -m asr_recipes.bin.fbank corpus=librispeech \
    manifest_dir="$data_dir/manifests" out_dir="$data_dir/fbank" parts="$parts" num_jobs="$nj" "${aug[@]}"
  OMP_NUM_THREADS=1 "$python" -m asr_recipes.bin.fbank corpus=musan \
    manifest_dir="$data_dir/manifests" out_dir="$data_dir/fbank" "parts=[noise,speech]" num_jobs="$nj"
  mark_done "$data_dir" 2
fi

if should_run 3 "$data_dir"; then
  log "Stage 3: $token_kind tokenizer in $lang_dir"
  "$python" -m asr_recipes.bin.tokenizer \
    cuts="$data_dir/manifests/librispeech_supervisions_train-clean-100.jsonl.gz" \
    out_dir="$lang_dir" kind="$token_kind" vocab_size="$vocab_size"
  mark_done "$data_dir" 3
fi

# Stages 4-10 (local/stages.sh) with this corpus's overrides: noise mixed into training on the fly;
# the LM's dev text (its perplexity in the log) and the test transcripts it must never see.
title="mini: synthesized $task ($size), $experiment experiment"
stage_train "data.musan.parts=$noise_parts"
stage_average
stage_decode
stage_results "$title"
stage_export
stage_lm "text.files=[$lm_text_file]" \
  "dev.manifests=[$manifests/librispeech_supervisions_dev-clean.jsonl.gz,$manifests/librispeech_supervisions_dev-unseen.jsonl.gz]" \
  "exclude_manifests=[$manifests/librispeech_supervisions_test-clean.jsonl.gz,$manifests/librispeech_supervisions_test-unseen.jsonl.gz]"
stage_lm_decode "$title"

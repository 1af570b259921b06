#!/usr/bin/env bash
# Demo recipe: synthesized English speech (espeak-ng + flite + sox, no download) in the
# LibriSpeech layout with generated noise, character tokens (one per 40 ms frame), the small
# Conformer transducer trained on a CPU for a fixed time (trainer.max_minutes in
# conf/experiment/mini.yaml).
#
#   bash egs/mini/run.sh                                  # everything (what `make demo` runs)
#   bash egs/mini/run.sh --stage 4 --stop-stage 4 --train-args "trainer.max_minutes=5"
#
# Stages: 0 synthesize corpus and noise, 1 lhotse manifests, 2 fbank (training part: speed
# perturbation 0.9/1.1 and reverberation), 3 tokenizer, 4 train (noise mixed in on the fly),
# 5 average the last epochs, 6 decode every dev/test part (greedy + modified beam), 7 append
# to RESULTS.md, 8 export the model for sherpa-onnx (exp/onnx: encoder/decoder/joiner.onnx, tokens.txt).
# Hyper-parameters live in conf/experiment/mini.yaml. Finished stages leave a done-marker
# (<data-dir>/.done/stage-N for 0-3, <exp-dir>/.done/stage-N for 4-8); delete it to redo one.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../local/common.sh"
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

stage=0                          # first stage to run
stop_stage=8                     # last stage to run
dl_dir=$RECIPE_DIR/download      # stage 0 writes the corpus to <dl-dir>/LibriSpeech, noise to <dl-dir>/musan
data_dir=$RECIPE_DIR/data        # manifests, features, tokenizer
exp_dir=$RECIPE_DIR/exp          # checkpoints, logs, TensorBoard, decoding results
results_md=$RECIPE_DIR/RESULTS.md  # stage 7 appends its table here
task=commands                    # synthesized task: commands (47 words) | sentences (~290 words)
size=full                        # corpus size: tiny (8/3/3 utterances) | full (3000/200/200) | N per split
seed=0                           # corpus synthesis seed
synth_args=""                    # extra Hydra overrides for synthesis, e.g. "flite_voices=[]" (espeak-ng only)
augment=true                     # speed perturbation + reverberation (fbank) and generated noise (training)
reverb_prob=0.2                  # with --augment true: fraction of training cuts reverberated
nj=2                             # parallel jobs for synthesis and fbank
token_kind=char                  # tokenizer: char | bpe | unigram (conf/experiment/mini.yaml trains one letter per frame)
vocab_size=null                  # bpe/unigram: vocabulary size, e.g. 60; char: null (all characters)
epoch=last                       # decode the newest epoch (training stops by time: trainer.max_minutes)
avg=1                            # ... averaged over this many epochs (1: the running average of the last one)
checkpoints=""                   # instead of epoch/avg: decode these files of the exp dir, e.g. "minutes-5.pt minutes-10.pt"
beam=4                           # modified beam search width
max_sym_per_frame=1              # tokens per encoder frame (40 ms) in both searches, as in sherpa-onnx
streaming=false                  # true: train a streaming model (model.causal=true, dynamic chunks) and decode it chunk by chunk
decode_chunks=""                 # with --streaming true: decode with these chunks (encoder frames of 40 ms), e.g. "4 8 16"; empty: the one the checkpoint records
experiment=mini                  # conf/experiment/<name>.yaml, used by train and decode
python=$([ -x "$ASR_RECIPES_ROOT/.venv/bin/python" ] && echo "$ASR_RECIPES_ROOT/.venv/bin/python" || echo python3)  # Python with asr_recipes installed
train_args=""                    # extra Hydra overrides for training, e.g. "model=tiny trainer.num_epochs=1"
decode_args=""                   # extra Hydra overrides for decoding, e.g. "data.max_duration=100"
. "$ASR_RECIPES_ROOT/local/parse_options.sh"
case "$streaming" in
  true) ;;
  false) ;;
  *) die "--streaming must be true or false, not '$streaming'" ;;
esac

# Python gets absolute paths: the stages do not depend on the caller's directory.
dl_dir=$(realpath -m "$dl_dir")
data_dir=$(realpath -m "$data_dir")
exp_dir=$(realpath -m "$exp_dir")
results_md=$(realpath -m "$results_md")
lang_dir=$data_dir/lang_${token_kind}$([ "$token_kind" = char ] || echo "_$vocab_size")
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

if should_run 4 "$exp_dir"; then
  log "Stage 4: train in $exp_dir (rerunning resumes from the newest checkpoint)"
  read -r -a extra <<< "$train_args"
  "$python" -m asr_recipes.bin.train experiment="$experiment" exp_dir="$exp_dir" \
    tokenizer_dir="$lang_dir" data.manifest_dir="$data_dir/fbank" "data.musan.parts=$noise_parts" \
    "model.causal=$streaming" "${extra[@]}"
  mark_done "$exp_dir" 4
fi

if [ -z "$checkpoints" ] && should_run 5 "$exp_dir"; then
  log "Stage 5: average epoch $epoch over the last $avg epochs (epoch=last: the newest epoch)"
  "$python" -m asr_recipes.bin.average exp_dir="$exp_dir" epoch="$epoch" avg="$avg"
  mark_done "$exp_dir" 5
fi

if should_run 6 "$exp_dir"; then
  log "Stage 6: decode the dev/test parts (greedy and modified beam search) into $exp_dir/<method>/"
  read -r -a extra <<< "$decode_args"
  read -r -a files <<< "$checkpoints"
  weights=("epoch=$epoch avg=$avg")
  [ ${#files[@]} -gt 0 ] && weights=("${files[@]/#/checkpoint=$exp_dir/}")
  for w in "${weights[@]}"; do
    read -r -a choice <<< "$w"
    for chunk in ${decode_chunks:-recorded}; do  # streaming models: one decoding per chunk size
      chunk_arg=(); [ "$chunk" = recorded ] || chunk_arg=("chunk_size=$chunk")
      "$python" -m asr_recipes.bin.decode experiment="$experiment" exp_dir="$exp_dir" "${choice[@]}" \
        "methods=[greedy_search,modified_beam_search]" beam="$beam" max_sym_per_frame="$max_sym_per_frame" \
        data.manifest_dir="$data_dir/fbank" streaming="$streaming" "${chunk_arg[@]}" "${extra[@]}"
    done
  done
  mark_done "$exp_dir" 6
fi

if should_run 7 "$exp_dir"; then
  log "Stage 7: append the results to $results_md"
  "$python" -m asr_recipes.bin.results exp_dir="$exp_dir" results_md="$results_md" \
    "title='mini: synthesized $task ($size), $experiment experiment'"
  mark_done "$exp_dir" 7
fi

if should_run 8 "$exp_dir"; then
  log "Stage 8: export for sherpa-onnx (fp32 + int8 ONNX, checked against PyTorch) into $exp_dir/onnx"
  read -r -a files <<< "$checkpoints"
  ckpt=$exp_dir/averaged-epoch-$epoch-avg-$avg.pt
  # epoch=last: the average stage 5 wrote (its epoch is the one the time budget reached)
  [ "$epoch" = last ] && ckpt=$(ls -t "$exp_dir"/averaged-epoch-*-avg-*.pt | head -n 1)
  [ ${#files[@]} -gt 0 ] && ckpt=$exp_dir/${files[-1]}  # the last of --checkpoints
  "$python" -m asr_recipes.bin.export checkpoint="$ckpt" out_dir="$exp_dir/onnx" int8=true
  mark_done "$exp_dir" 8
fi

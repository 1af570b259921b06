#!/usr/bin/env bash
# LibriSpeech (960 h or train-clean-100): icefall's pruned_transducer_stateless2 setup
# (conf/experiment/librispeech.yaml), BPE 500, training with torchrun on --ngpu GPUs.
#
#   bash egs/librispeech/run.sh                                   # download ... score
#   bash egs/librispeech/run.sh --dl-dir /data --full-libri false --ngpu 4
#   bash egs/librispeech/run.sh --stage 5 --torchrun-args \
#     "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint host0:29400 --rdzv-id ls960"
#
# Stages: 0 download (+ MUSAN), 1 lhotse manifests, 2 MUSAN manifests + fbank (--use-musan true),
# 3 fbank (0.9/1.1 speed perturbation of the training parts), 4 BPE tokenizer, 5 train,
# 6 average checkpoints, 7 decode test-clean/test-other (greedy + modified beam), 8 RESULTS.md,
# 9 export the averaged model for sherpa-onnx (exp/onnx: encoder/decoder/joiner.onnx, tokens.txt).
# Finished stages leave a done-marker (<data-dir>/.done/stage-N for 0-4, <exp-dir>/.done/
# stage-N for 5-9); delete it to redo a stage.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../local/common.sh"
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

stage=0                          # first stage to run
stop_stage=9                     # last stage to run
dl_dir=$RECIPE_DIR/download      # holds (or receives) LibriSpeech/ and musan/; only read after stage 0
data_dir=$RECIPE_DIR/data        # manifests, features, tokenizer
exp_dir=$RECIPE_DIR/exp          # checkpoints, logs, TensorBoard, decoding results
results_md=$RECIPE_DIR/RESULTS.md  # stage 8 appends its table here
full_libri=true                  # true: train on 960 h; false: train-clean-100 only
use_musan=false                  # mix MUSAN noise into training batches
nj=4                             # parallel jobs for fbank
vocab_size=500                   # BPE vocabulary size
ngpu=8                           # training processes per node (icefall's result: 8 GPUs x 300 s batches)
torchrun_args="--standalone"     # torchrun rendezvous; multi-node: "--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID"
epoch=26                         # decode this epoch's model (= trainer.num_epochs in conf/experiment/librispeech.yaml)
avg=8                            # ... averaged over this many epochs
beam=4                           # modified beam search width
max_sym_per_frame=1              # symbols per encoder frame in both searches
streaming=false                  # true: train a streaming model (model.causal=true, dynamic chunks) and decode it chunk by chunk
decode_chunks=""                 # with --streaming true: decode with these chunks (encoder frames of 40 ms), e.g. "4 8 16"; empty: the one the checkpoint records
experiment=librispeech           # conf/experiment/<name>.yaml, used by train and decode
python=$([ -x "$ASR_RECIPES_ROOT/.venv/bin/python" ] && echo "$ASR_RECIPES_ROOT/.venv/bin/python" || echo python3)  # Python with asr_recipes installed
train_args=""                    # extra Hydra overrides for training, e.g. "trainer.max_minutes=600"
decode_args=""                   # extra Hydra overrides for decoding, e.g. "data.max_duration=600"
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
lang_dir=$data_dir/lang_bpe_$vocab_size
case "$full_libri" in
  true) train_parts="train-clean-100,train-clean-360,train-other-500"; hours="960 h" ;;
  false) train_parts="train-clean-100"; hours="100 h" ;;
  *) die "--full-libri must be true or false, not '$full_libri'" ;;
esac
parts="[$train_parts,dev-clean,dev-other,test-clean,test-other]"
case "$use_musan" in
  true) musan_override="data.musan.parts=[music,speech,noise]" ;;
  false) musan_override="data.musan.parts=[]" ;;
  *) die "--use-musan must be true or false, not '$use_musan'" ;;
esac

if should_run 0 "$data_dir"; then
  log "Stage 0: download LibriSpeech $parts to $dl_dir (parts on disk are skipped)"
  "$python" -m asr_recipes.bin.prepare corpus=librispeech download=true dl_dir="$dl_dir" \
    out_dir="$data_dir/manifests" parts="$parts"
  if [ "$use_musan" = true ]; then
    "$python" -m asr_recipes.bin.prepare corpus=musan download=true dl_dir="$dl_dir" \
      out_dir="$data_dir/manifests"
  fi
  mark_done "$data_dir" 0
fi

if should_run 1 "$data_dir"; then
  log "Stage 1: lhotse manifests in $data_dir/manifests"
  "$python" -m asr_recipes.bin.prepare corpus=librispeech dl_dir="$dl_dir" \
    out_dir="$data_dir/manifests" parts="$parts"
  mark_done "$data_dir" 1
fi

if [ "$use_musan" = true ] && should_run 2 "$data_dir"; then
  log "Stage 2: MUSAN manifests and fbank (10 s noise cuts)"
  "$python" -m asr_recipes.bin.prepare corpus=musan dl_dir="$dl_dir" out_dir="$data_dir/manifests"
  OMP_NUM_THREADS=1 "$python" -m asr_recipes.bin.fbank corpus=musan \
    manifest_dir="$data_dir/manifests" out_dir="$data_dir/fbank" num_jobs="$nj"
  mark_done "$data_dir" 2
fi

if should_run 3 "$data_dir"; then
  log "Stage 3: fbank features in $data_dir/fbank (speed perturbation 0.9/1.1 of $train_parts)"
  OMP_NUM_THREADS=1 "$python" -m asr_recipes.bin.fbank corpus=librispeech \
    manifest_dir="$data_dir/manifests" out_dir="$data_dir/fbank" parts="$parts" \
    speed_perturb=true num_jobs="$nj"
  mark_done "$data_dir" 3
fi

if should_run 4 "$data_dir"; then
  log "Stage 4: BPE $vocab_size tokenizer in $lang_dir (train-clean-100 transcripts)"
  "$python" -m asr_recipes.bin.tokenizer \
    cuts="$data_dir/manifests/librispeech_supervisions_train-clean-100.jsonl.gz" \
    out_dir="$lang_dir" kind=bpe vocab_size="$vocab_size"
  mark_done "$data_dir" 4
fi

if should_run 5 "$exp_dir"; then
  log "Stage 5: train on $hours with $ngpu process(es) per node (rerunning resumes)"
  read -r -a launcher <<< "$torchrun_args"
  read -r -a extra <<< "$train_args"
  "$python" -m torch.distributed.run --nproc_per_node "$ngpu" "${launcher[@]}" \
    -m asr_recipes.bin.train experiment="$experiment" exp_dir="$exp_dir" tokenizer_dir="$lang_dir" \
    data.manifest_dir="$data_dir/fbank" "data.train_parts=[$train_parts]" "$musan_override" "model.causal=$streaming" "${extra[@]}"
  mark_done "$exp_dir" 5
fi

if should_run 6 "$exp_dir"; then
  log "Stage 6: average epoch $epoch over the last $avg epochs"
  "$python" -m asr_recipes.bin.average exp_dir="$exp_dir" epoch="$epoch" avg="$avg"
  mark_done "$exp_dir" 6
fi

if should_run 7 "$exp_dir"; then
  log "Stage 7: decode test-clean and test-other into $exp_dir/<method>/"
  read -r -a extra <<< "$decode_args"
  for chunk in ${decode_chunks:-recorded}; do  # streaming models: one decoding per chunk size
    chunk_arg=(); [ "$chunk" = recorded ] || chunk_arg=("chunk_size=$chunk")
    "$python" -m asr_recipes.bin.decode experiment="$experiment" exp_dir="$exp_dir" \
      epoch="$epoch" avg="$avg" "methods=[greedy_search,modified_beam_search]" beam="$beam" \
      max_sym_per_frame="$max_sym_per_frame" data.manifest_dir="$data_dir/fbank" \
      "data.test_parts=[test-clean,test-other]" streaming="$streaming" "${chunk_arg[@]}" "${extra[@]}"
  done
  mark_done "$exp_dir" 7
fi

if should_run 8 "$exp_dir"; then
  log "Stage 8: append the results to $results_md"
  "$python" -m asr_recipes.bin.results exp_dir="$exp_dir" results_md="$results_md" \
    "title='LibriSpeech $hours, pruned transducer (icefall pruned_transducer_stateless2 setup)'"
  mark_done "$exp_dir" 8
fi

if should_run 9 "$exp_dir"; then
  log "Stage 9: export for sherpa-onnx (fp32 + int8 ONNX, checked against PyTorch) into $exp_dir/onnx"
  "$python" -m asr_recipes.bin.export checkpoint="$exp_dir/averaged-epoch-$epoch-avg-$avg.pt" \
    out_dir="$exp_dir/onnx" int8=true
  mark_done "$exp_dir" 9
fi

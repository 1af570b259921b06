# shellcheck shell=bash
# The options every egs/<corpus>/run.sh has, with their usual defaults; the shared stages of
# local/stages.sh (4 train ... 8 export, 9 lm, 10 lm_decode) read them. A recipe sets RECIPE_DIR (its directory: the
# default paths are below it), sources this file, then defines its own options and the defaults
# of these that differ for it (`epoch=26  # comment`), then parses the command line:
#
#   RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   . "$ASR_RECIPES_ROOT/local/recipe_options.sh"
#   vocab_size=500                   # BPE vocabulary size
#   epoch=26                         # decode this epoch's model
#   . "$ASR_RECIPES_ROOT/local/parse_options.sh"
#   resolve_recipe_options           # (local/stages.sh) checks them, makes the paths absolute
#
# `run.sh --help` lists these after the recipe's own options (OPTION_FILES, read by the option parser).
OPTION_FILES+=("${BASH_SOURCE[0]}")

stage=0                          # first stage to run
stop_stage=10                    # last stage to run
dl_dir=$RECIPE_DIR/download      # the corpus: stage 0 writes (downloads or synthesizes) it here; later stages only read it
data_dir=$RECIPE_DIR/data        # manifests, features, tokenizer (stages 1-3)
exp_dir=$RECIPE_DIR/exp          # checkpoints, logs, TensorBoard, decoding results, RESULTS.md, onnx/, lm/ (stages 4-10)
results_md=""                    # stage 7 writes the run's results table here; empty: <exp-dir>/RESULTS.md
nj=4                             # parallel jobs of the data stages
experiment=$(basename "$RECIPE_DIR")  # conf/experiment/<name>.yaml, used by train and decode
model=""                         # train conf/model/<name>.yaml (Hydra model=<name>) under the experiment's settings, or conf/experiment/<experiment>_<name>.yaml where it exists (that model's own, e.g. its optimizer); empty: the experiment's model
ngpu=""                          # train with torchrun, this many processes per node; empty: one process without torchrun
torchrun_args="--standalone"     # with --ngpu: torchrun rendezvous; multi-node: "--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID"
streaming=false                  # true: train a streaming model (model.causal=true, dynamic chunks) and decode it chunk by chunk
epoch=last                       # average and decode this epoch's model; last: the newest epoch-N.pt
avg=1                            # ... averaged over this many epochs (1: the running average of that epoch alone)
checkpoints=""                   # instead of epoch/avg: decode these files of the exp dir, e.g. "minutes-5.pt minutes-10.pt" (skips stage 5)
beam=4                           # modified beam search width
max_sym_per_frame=1              # symbols per 40 ms encoder frame in both searches (sherpa-onnx emits at most 1)
decode_chunks=""                 # with --streaming true: decode with these chunks (encoder frames of 40 ms), e.g. "4 8 16"; empty: the one the checkpoint records
python=$([ -x "$ASR_RECIPES_ROOT/.venv/bin/python" ] && echo "$ASR_RECIPES_ROOT/.venv/bin/python" || echo python3)  # Python with asr_recipes installed
init_from=""                     # train: start from this checkpoint's weights (fine-tuning, e.g. import_icefall's imported.pt); fresh optimizer and schedule
train_args=""                    # extra Hydra overrides for training, e.g. "trainer.max_minutes=5"
decode_args=""                   # extra Hydra overrides for decoding, e.g. "data.max_duration=100"
lm_text=""                       # stage 9: the LM's training text, one normalised sentence per line (.gz too); empty: the recipe's own
lm_dir=""                        # stage 9 writes the LM here (checkpoints, lodr-bigram.json, onnx/), stage 10 reads it; empty: <exp-dir>/lm
lm_model=small                   # stage 9: the LM's size, conf/lm_model/<name>.yaml
lm_args=""                       # extra Hydra overrides for train_lm, e.g. "trainer.num_epochs=5 trainer.max_tokens=10000"
lm_scale=0.3                     # stage 10: weight of the LM's log-probability in modified beam search (shallow fusion)
lodr_scale=0                     # stage 10: weight of the LODR bigram's log-probability, subtracted; 0: no LODR

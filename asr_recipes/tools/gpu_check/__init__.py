"""The GPU check (``make gpu-check``): the project's GPU promises, checked in one short run.

What it needs: a machine with one CUDA GPU and a Python with torch, torchaudio and triton, and
the bundle ``make gpu-prepare`` builds beforehand on any machine with network access and
espeak-ng (``.gpu-check/``: the synthesized training and test data as features, a tokenizer,
and wheels of the packages that Python may lack). The GPU machine then needs neither network
nor speech synthesis, and the run only measures. Without CUDA it runs in smoke mode (a tiny
model, a few steps). Modules, one job each:

    bundle        the synthesized data, packed on the preparing machine and installed on the GPU one
    wheels        the Python packages the GPU machine's Python may lack, fetched beforehand
    prepare       bundle + wheels into .gpu-check/ (bin.gpu_prepare)
    timebox       one command with a time limit, killed with its process group
    report        the markdown report, rewritten after every part
    kernels       part 1: pytest tests/rnnt and the Swoosh tests, outcome counts
    loss_bench    part 2: bin.bench_loss output and the speed/memory targets
    training      parts 3 and 5: bin.train under torchrun, log parsing; pruned vs full (Conformer),
                  audio seconds per second under fp16 / bf16 autocast (Zipformer-M, ScaledAdam)
    (part 4, RTF and utt/s at fixed batch sizes: asr_recipes.tools.bench.decode, bin.bench_decode)
    check         the parts in order, within one deadline (bin.gpu_check)
"""

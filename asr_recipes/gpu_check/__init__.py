"""The GPU check (``make gpu-check``): the project's GPU promises, checked in one short run.

A GPU is lent to this project rarely and briefly, so everything is prepared on a CPU machine
(``make gpu-prepare``) and the run itself only measures. Modules, one job each:

    bundle        the synthesized data, packed here and installed there
    wheels        the Python packages the GPU machine lacks, fetched here
    prepare       bundle + wheels into .gpu-check/ (bin.gpu_prepare)
    timebox       one command with a time limit, killed with its process group
    report        the markdown report, rewritten after every part
    kernels       part 1: pytest tests/rnnt, outcome counts
    loss_bench    part 2: bin.bench_loss output and the speed/memory targets
    training      part 3: bin.train under torchrun, log parsing, pruned vs full
    decode_speed  part 4: RTF and utt/s at fixed batch sizes (bin.bench_decode)
    check         the parts in order, within one deadline (bin.gpu_check)
"""

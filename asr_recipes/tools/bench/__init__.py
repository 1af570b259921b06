"""Benchmarks, each behind a thin entry point in asr_recipes.bin:

    loss    one training-loss step: torchaudio's full loss against our pruned loss (bin.bench_loss)
    step    where one training step's time goes, phase by phase (bin.bench_step)
    decode  decoding speed at fixed batch sizes (bin.bench_decode, and the GPU check's part 4)
"""

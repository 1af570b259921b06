"""Tooling around the library, above every layer and imported by none: benchmarks (bench) and
the GPU check (gpu_check). The speech synthesizer of the demo lives in asr_recipes.synth."""

"""facesr benchmarks: ``python -m benchmarks [--quick] [--only degradation,dataloader,train,inference,matmul]``.

Each module is also runnable alone (``python -m benchmarks.bench_degradation`` ...).
Numbers are ratios measured side by side in one run; see docs/performance.md.
"""

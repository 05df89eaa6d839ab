"""``fastnn bench``: end-to-end training/inference benchmarks against the NumPy reference and PyTorch.

Each measurement runs in its own process (``worker.py``); engines alternate A B A B and the
median of the repetitions is reported as images/s, ratios, GFLOP/s and % of this machine's
sgemm peak measured in the same run with the same BLAS.
"""

"""vitalcore: ingest engine for wearable patient monitoring.

Subpackages and modules:

- :mod:`vitalcore.codec` -- wire format v1: binary frame decoder/encoder (Cython) and JSON frames.
- :mod:`vitalcore.buffers` -- per-stream recent windows in Arrow/numpy form.
- :mod:`vitalcore.storage` -- write-ahead log and Parquet history store.
- :mod:`vitalcore.dsp` -- signal algorithms (QRS, SpO2, NIBP) compiled with numba.
- :mod:`vitalcore.errors` -- the exception hierarchy.
"""

__version__ = "0.1.0"

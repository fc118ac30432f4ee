"""Coverage-instrumented builds of the Cython codecs for fuzzing (see docs/fuzzing.md)."""

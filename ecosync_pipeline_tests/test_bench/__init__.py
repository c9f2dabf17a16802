"""Tests of the benchmarks (ecosync_pipeline.bench and `ecosync bench`)."""

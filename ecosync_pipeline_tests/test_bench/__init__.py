"""Tests of the benchmarks (ecosync_pipeline.lab.bench and `ecosync bench`)."""

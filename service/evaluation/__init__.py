"""Admin evaluation jobs: the benchmark harness run in the background, persisted to disk."""

"""Data: readers, sessions, missing-modality tables, synthetic benchmark, batching."""

"""Report: one HTML page comparing the variants of a run."""

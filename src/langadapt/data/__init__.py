"""Data layer: read sources, clean, filter, deduplicate, mix by tokens and pack."""

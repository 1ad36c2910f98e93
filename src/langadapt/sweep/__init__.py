"""Sweeps: one config, several variants (`sweep:` section), run as one comparison.

`expand` turns the section into named, validated variant configs; `store` keeps their stage folders in one
content-addressed store so a stage with the same config and inputs is made once for all of them; `runner`
runs the variants and writes the comparison table (`langadapt.report.variants`).
"""

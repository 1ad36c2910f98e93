"""`langadapt plan`: what a run will cost (tokens, FLOPs, memory per device, wall time) before it runs.

A pure core (`core.plan_run` over one RunConfig, `core.plan_variants` over several) and a thin CLI; the
formulas are in docs/plan.md.
"""

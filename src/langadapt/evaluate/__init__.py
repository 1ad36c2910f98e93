"""Evaluation: bits per character, multiple choice, copy and generation tasks, lm-eval bridge."""

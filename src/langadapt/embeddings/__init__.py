"""Embedding surgery: resize a model to a new tokenizer and initialise the new rows."""

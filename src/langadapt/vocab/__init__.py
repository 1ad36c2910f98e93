"""Vocabulary adaptation: train, extend and optimise tokenizers; token maps and tokenizer metrics."""

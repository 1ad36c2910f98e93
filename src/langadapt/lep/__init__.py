"""Learned Embedding Propagation: move adapted embeddings from a base model into its instruct sibling."""

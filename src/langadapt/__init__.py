"""langadapt: adapt a pretrained LLM to a new language with one config and one command."""

__version__ = "0.1.0"

"""Dataset translation: instruction and preference files into the target language (the `translate` stage)."""

"""Training stages: continued pre-training, instruction tuning, preference alignment."""

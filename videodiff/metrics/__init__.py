"""Evaluation metrics: FVD and the networks it needs."""

"""Adversarial detection."""

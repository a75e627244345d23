"""Segue: real-time customer-journey orchestration on Kafka."""

__version__ = "0.1.0"

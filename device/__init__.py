"""TinyLCM: the edge appliance's inference, drift detection, adaptation, outbox and sync."""

__version__ = "0.1.0"

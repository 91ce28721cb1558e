"""Transports: one module per kind of descriptor, each a small state machine."""

"""Tracing: W3C context propagation, span export over NATS, the collector and the call tree."""

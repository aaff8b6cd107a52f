"""Generative AI in the mesh: litellm providers, the consumer-side agent loop, prompt templates."""

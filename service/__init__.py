"""The embedded local engine: wiring of the local stack, the local model endpoint, and the `scones` CLI."""

"""Workflow definitions, each written once: the state machine (ASL), the event pattern, resource names."""

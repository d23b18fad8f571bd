"""The stance rules, one module per family; each registers itself in pipeline.stance.registry."""

"""The config layer: where conf/ is, composing it, the structured schemas and the range checks."""

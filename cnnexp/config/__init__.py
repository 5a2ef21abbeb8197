"""The config layer: where conf/ is, composing it, and running a command as a Hydra app."""

"""CNN features and linear probes: `layers` (which activation, a hook module that returns it),
`extract` (a run or registry model over a dataset's splits), `store` (the HDF5 features file,
written in buffered blocks and atomically), `probe` (logistic regression with a grid over C, saved
without pickle) and `predict` (a probe run as a model for `cnnexp predict`)."""

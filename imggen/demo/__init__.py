"""``imggen demo``: the three pipelines end to end on this machine, and the engine's own placeholder job."""

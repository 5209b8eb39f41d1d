"""Image helpers any part may use, with no provider and no run: a grid's tiles, perceptual hashes."""

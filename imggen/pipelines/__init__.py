"""The three jobs: style matrix, instruction images, training set."""

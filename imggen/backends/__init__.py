"""One module per provider behind small protocols: generate, edit, upscale, judge."""

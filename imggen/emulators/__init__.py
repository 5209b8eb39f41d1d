"""Local stand-ins for the providers' HTTP APIs, for tests and offline rehearsal (never used by pipelines),
and the engine demo's in-process placeholder provider."""

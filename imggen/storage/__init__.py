"""Where results go: atomic local writes, safe paths from untrusted names, S3."""

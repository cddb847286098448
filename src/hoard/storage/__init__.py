"""Storage layer: named immutable blobs on some medium (directory, memory, ssh, S3)."""

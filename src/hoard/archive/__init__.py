"""The archive layer (see docs/design/architecture.md)."""

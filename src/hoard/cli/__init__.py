"""The cli layer (see docs/design/architecture.md)."""

"""The objects layer (see docs/design/architecture.md)."""

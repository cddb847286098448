"""The commands layer (see docs/design/architecture.md)."""

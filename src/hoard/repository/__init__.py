"""The repository layer (see docs/design/architecture.md)."""

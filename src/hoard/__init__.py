"""hoard: deduplicating, compressing, authenticated-encrypting backup."""

__version__ = "0.1.0"

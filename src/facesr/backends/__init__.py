"""Optional inference backends (see docs/performance.md)."""

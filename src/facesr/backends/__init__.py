"""Optional inference backends and CPU capability checks (see docs/performance.md)."""

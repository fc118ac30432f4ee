"""Lifecycle tracking web app on vitalcore's public API (see examples/lifecycle/README.md)."""

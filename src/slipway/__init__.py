"""slipway: zero-downtime deploys with backups and rollback for FastAPI + Next.js + SQLite
apps on your own servers. The CLI (``slipway.cli``) is a thin layer over this library."""

__version__ = "0.1.0"

"""A read-only web dashboard over the same records the CLI reads."""

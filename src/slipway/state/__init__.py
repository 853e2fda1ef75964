"""What slipway knows about each environment on each host: lock, records, audit log."""

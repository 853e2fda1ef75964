"""Deployment metrics (DORA) computed from slipway's own deployment records."""

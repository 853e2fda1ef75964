"""GitHub integration: the workflows slipway writes into an app's repository, and the
REST calls its commands make (preflight, releases, PR reports, deployment statuses)."""

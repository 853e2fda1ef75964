"""Deploy orchestration: build a release, swap processes, gate on health, roll back."""

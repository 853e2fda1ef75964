"""Pure functions that build argv lists. They run nothing; transports run what they build.

Tests assert their exact output: that is how we know no user value is ever glued into a
shell string (docs/architecture.md, after Kamal's ``commands/``).
"""

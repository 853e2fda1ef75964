"""Pure functions that build argv lists. They run nothing; transports run what they build.

Tests assert their exact output: that is how we know no user value is ever glued into a
shell string (DESIGN.md section 5, after Kamal's ``commands/``).
"""

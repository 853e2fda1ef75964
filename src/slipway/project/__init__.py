"""What a repository holds, read statically: the Python dependency sources of its
backend, its frontend's package manager and Next.js settings, its FastAPI routes.

Everything here works on a :class:`~slipway.project.tree.Tree`, so the same reading
serves ``slipway init`` (a working directory), ``slipway check --deep`` and the deploy
(a commit): nothing is imported or run from the app, so a broken app is still read.
"""

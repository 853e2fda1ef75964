"""codeframe-mini: a small app with the shape of CodeFRAME (FastAPI + Next.js + SQLite).

slipway's tests and demo deploy it. Its behaviour is chosen by a *variant* (see
:mod:`codeframe_mini.variant`) so the same code can play a good release, a release with
a new migration, a destructive migration, or one of several broken builds.
"""

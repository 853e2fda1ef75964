"""age (https://age-encryption.org) commands: backups are encrypted at rest on the host.

Only public keys (recipients) are needed to encrypt; the private key (identity) is
needed only to restore or verify, and is never stored on the host beyond one command.
"""

from __future__ import annotations

Argv = list[str]


def encrypt(recipients: list[str], source: str, dest: str) -> Argv:
    argv = ["age", "--encrypt"]
    for recipient in recipients:
        argv += ["--recipient", recipient]
    return [*argv, "--output", dest, source]


def decrypt(identity_file: str, source: str, dest: str) -> Argv:
    return ["age", "--decrypt", "--identity", identity_file, "--output", dest, source]

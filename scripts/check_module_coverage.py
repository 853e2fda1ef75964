"""Fail when a critical module (deploy, rollback, backup) is below 95% line coverage.

The design asks >= 80% overall (pytest-cov's fail_under) and >= 95% on critical paths;
this reads coverage.xml (Cobertura) and applies the second rule per file.
Usage: python scripts/check_module_coverage.py coverage.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

CRITICAL_PREFIXES = ("slipway/deploy/", "slipway/backups/")
CRITICAL_NAMES = ("rollback",)
FLOOR = 95.0


def is_critical(filename: str) -> bool:
    name = filename.replace("\\", "/")
    # coverage.xml names files relative to a source root: "src/slipway/x.py" or "x.py".
    name = name[name.index("slipway/") :] if "slipway/" in name else "slipway/" + name
    return name.startswith(CRITICAL_PREFIXES) or any(n in name for n in CRITICAL_NAMES)


def main(path: str) -> int:
    root = ET.parse(path).getroot()  # noqa: S314
    failures: list[str] = []
    checked = 0
    for cls in root.iter("class"):
        filename = cls.get("filename", "")
        if not is_critical(filename) or filename.endswith("__init__.py"):
            continue
        lines = cls.findall("lines/line")
        if not lines:
            continue
        checked += 1
        covered = sum(1 for line in lines if int(line.get("hits", "0")) > 0)
        percent = 100.0 * covered / len(lines)
        status = "ok" if percent >= FLOOR else "BELOW 95%"
        print(f"{filename:50} {percent:6.1f}%  {status}")
        if percent < FLOOR:
            failures.append(filename)
    if checked == 0:
        print("no deploy/rollback/backup modules yet: nothing to check")
    if failures:
        print(f"critical modules below {FLOOR}%: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "coverage.xml"))

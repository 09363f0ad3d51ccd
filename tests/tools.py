"""The system programs some tests start, and one line naming what to install when one is missing.

``make test`` runs ``python -m tests.tools`` before pytest; ``tests/conftest.py`` asks the same
question for a bare ``pytest`` run. A missing program is never a skip, with ``CI=true`` or not:
the run stops before the first test (``.ci/run`` installs both programs first).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

TESTS = Path(__file__).resolve().parent


@attrs.frozen
class Tool:
    """A program, the Debian package that brings it, and the tests that start it."""

    name: str
    package: str
    users: tuple[Path, ...]  # files or folders of tests
    path: str | None = None  # where the tests look for it, when they do not search PATH

    def found(self) -> bool:
        if self.path is not None:
            return os.access(self.path, os.X_OK)
        return os.access(f"/usr/bin/{self.name}", os.X_OK) or shutil.which(self.name) is not None

    def needed_by(self, targets: Sequence[Path]) -> bool:
        return any(_overlap(target, user) for target in targets for user in self.users)


TOOLS = (
    Tool("chromium", "chromium", (TESTS / "system" / "test_console.py",), path="/usr/bin/chromium"),
    Tool("redis-server", "redis-server", (TESTS / "multinode", TESTS / "records")),
)


def _overlap(target: Path, user: Path) -> bool:
    """Would running ``target`` (a file or folder of tests) run some of ``user``'s?"""
    return target == user or user.is_relative_to(target) or target.is_relative_to(user)


def missing(targets: Sequence[Path] = (TESTS,)) -> list[Tool]:
    return [tool for tool in TOOLS if tool.needed_by(targets) and not tool.found()]


def advice(tools: Sequence[Tool]) -> str:
    names = " and ".join(tool.name for tool in tools)
    packages = " ".join(tool.package for tool in tools)
    return (
        f"the tests need {names}: install with `apt-get update && apt-get install -y {packages}` "
        "(as root; .ci/run does this)"
    )


def main() -> int:
    absent = missing()
    if absent:
        print(advice(absent), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a machine without Chromium or redis-server is told, and which runs need them."""

from __future__ import annotations

import attrs

from .tools import TESTS, TOOLS, advice


def test_each_program_is_needed_only_by_runs_that_include_its_tests() -> None:
    chromium, redis = TOOLS
    assert chromium.needed_by([TESTS]) and redis.needed_by([TESTS])
    console = TESTS / "system" / "test_console.py"
    assert chromium.needed_by([console]) and not redis.needed_by([console])
    assert redis.needed_by([TESTS / "records"]) and not chromium.needed_by([TESTS / "records"])
    assert redis.needed_by([TESTS / "multinode" / "test_seam.py"]) and not chromium.needed_by([TESTS / "multinode"])
    assert not any(tool.needed_by([TESTS / "protocol"]) for tool in TOOLS)


def test_missing_programs_are_named_in_one_line_with_the_command_that_installs_them() -> None:
    gone = [attrs.evolve(tool, name=tool.name + "-absent", path="/nonexistent/" + tool.name) for tool in TOOLS]
    assert not any(tool.found() for tool in gone)
    line = advice(gone)
    assert "\n" not in line
    assert line.startswith("the tests need chromium-absent and redis-server-absent: ")
    assert "apt-get install -y chromium redis-server" in line

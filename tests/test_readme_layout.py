"""The README's layout table and the tree agree: every path it names exists, every top-level folder of the
repository and every module and subpackage of the library has its row, and a subpackage's row names exactly the
modules the subpackage holds."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
LIBRARY = REPOSITORY / "dfmvr_lib"


def layout_rows() -> dict[str, str]:
    """The layout table of README.md: path (the first cell, without backticks) -> the description cell."""
    text = (REPOSITORY / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    assert rows, "README.md: no rows found in the '## Layout' table"
    return rows


def tracked_top_level_folders() -> set[str]:
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return {f"{name.split('/', 1)[0]}/" for name in listed.stdout.splitlines() if "/" in name}


def library_entries() -> set[str]:
    """``dfmvr_lib/<module>.py`` and ``dfmvr_lib/<subpackage>/`` for every module and subpackage of the library."""
    modules = {f"dfmvr_lib/{path.name}" for path in LIBRARY.glob("*.py") if path.name != "__init__.py"}
    packages = {f"dfmvr_lib/{path.parent.name}/" for path in LIBRARY.glob("*/__init__.py")}
    return modules | packages


def test_every_path_in_the_layout_table_exists():
    missing = [path for path in layout_rows() if not (REPOSITORY / path).exists()]
    assert missing == [], f"README.md's layout table names paths that do not exist: {missing}"


def test_every_library_module_subpackage_and_top_level_folder_has_a_row():
    rows = set(layout_rows())
    expected = library_entries() | (tracked_top_level_folders() - {"dfmvr_lib/"})
    assert sorted(expected - rows) == [], "README.md's layout table lacks rows for these"


@pytest.mark.parametrize("package", sorted(path.parent.name for path in LIBRARY.glob("*/__init__.py")))
def test_a_subpackage_row_names_exactly_its_modules(package: str):
    description = layout_rows()[f"dfmvr_lib/{package}/"]
    modules = {path.stem for path in (LIBRARY / package).glob("*.py") if path.name != "__init__.py"}
    named = set(re.findall(r"`([a-z_0-9]+)`", description)) & (modules | _module_like(description))
    assert sorted(modules - named) == [], f"dfmvr_lib/{package}/: modules missing from its README row"
    assert sorted(named - modules) == [], f"dfmvr_lib/{package}/: its README row names modules that do not exist"


def _module_like(description: str) -> set[str]:
    """Backticked names in a row that are written like module names (lower case, no call, not a function the
    row names in parentheses), so that a renamed module left in the README is caught."""
    outside_parentheses = re.sub(r"\([^)]*\)", "", description)
    return set(re.findall(r"`([a-z][a-z_0-9]*)`", outside_parentheses))

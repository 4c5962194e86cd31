"""Installing the course: the Python versions it claims are the ones its pinned set installs on, and CI
installs and tests exactly as the README says.

The claim lives in three places: ``requires-python`` in pyproject.toml, the README's set-up
section, and the exact pins of requirements.txt (each pinned release declares the Pythons it
installs on). These tests keep them in agreement without a network: the pins' own metadata is read
from the installed distributions, and the course's code is parsed with the oldest claimed grammar.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from m6rec_lib.config import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
REQUIRES = SpecifierSet(PYPROJECT["project"]["requires-python"])
FLOOR = re.fullmatch(r">=\s*(\d+)\.(\d+)", str(REQUIRES).strip())


def pins() -> dict[str, str]:
    """``{distribution name: pinned version}`` from requirements.txt (comments and ``-e .`` left out)."""
    out = {}
    for line in (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        assert version, f"requirements.txt must pin exact versions (name==version), found {line!r}"
        out[name.strip()] = version.strip()
    return out


def test_requires_python_is_a_plain_floor():
    assert FLOOR, f"requires-python should be '>=3.X' (the oldest supported Python), got {REQUIRES}"


def oldest() -> Version:
    return Version(f"{FLOOR.group(1)}.{FLOOR.group(2)}.0")


def test_the_readme_states_the_same_oldest_python():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    claimed = re.findall(r"Python (3\.\d+) or newer", readme)
    assert claimed == [f"{FLOOR.group(1)}.{FLOOR.group(2)}"], (
        f"README.md says Python {claimed or '(nothing)'} or newer; pyproject.toml says {REQUIRES}")


def test_this_interpreter_is_a_supported_one():
    here = Version(".".join(map(str, sys.version_info[:3])))
    assert here in REQUIRES, f"the tests run on Python {here}, which pyproject.toml does not support ({REQUIRES})"


@pytest.mark.parametrize("name, version", sorted(pins().items()))
def test_every_pin_installs_on_the_oldest_claimed_python(name, version):
    """Each pinned release's own ``Requires-Python`` admits the oldest Python the course claims."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here; install requirements.txt to check its metadata")
    if Version(dist.version).public != Version(version).public:
        pytest.skip(f"{name} {dist.version} is installed, not the pinned {version}; its metadata would not tell")
    needs = dist.metadata.get("Requires-Python")
    if needs:
        assert oldest() in SpecifierSet(needs), (
            f"{name}=={version} needs Python {needs}, so the pinned set does not install on Python "
            f"{oldest().major}.{oldest().minor}: raise requires-python in pyproject.toml and the README, "
            "or pin an older release of it")


def _python_sources():
    folders = ["m6rec_lib", "tests", "scripts", "benchmarks", "datasets"]
    for folder in folders:
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))
    yield REPO_ROOT / "conftest.py"


def test_the_code_parses_with_the_oldest_claimed_grammar():
    """No syntax newer than the oldest claimed Python (e.g. 3.12's ``type X = ...`` or ``def f[T]()``)."""
    feature = (int(FLOOR.group(1)), int(FLOOR.group(2)))
    failures = []
    for path in _python_sources():
        try:
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=feature)
        except SyntaxError as exc:
            failures.append(f"{path.relative_to(REPO_ROOT)}:{exc.lineno}: {exc.msg}")
    assert not failures, f"syntax newer than Python {feature[0]}.{feature[1]}:\n" + "\n".join(failures)


def _fenced_commands(markdown: str, heading: str) -> list[str]:
    """The command lines of the code blocks under ``## heading`` in a markdown text."""
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_installs_as_the_readme_says_and_runs_its_test_command():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    ci = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    setup = _fenced_commands(readme, "Set up (once, on a fresh machine)")
    tests = _fenced_commands(readme, "Run the tests")
    assert setup and tests == ["python -m pytest"]
    for command in setup + tests:
        assert any(line.startswith(command) for line in ci), f".ci/run does not run the README's {command!r}"
    assert ci[-1] == "python -m pytest", "CI must end with the README's test command"

"""The package declares what it imports, ships only the library, and the scripts need
no import path tricks."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

tomllib = pytest.importorskip("tomllib")

REPO = pathlib.Path(__file__).resolve().parent.parent
RIGL_DIR = REPO / "rigl"
TEST_SUPPORT_DIR = RIGL_DIR / "testing"
FIRST_PARTY = "rigl"
TEST_ONLY_MODULES = frozenset({"pytest", "hypothesis"})
SCRIPT_DIRS = ("mnist", "cifar10", "imagenet_resnet", "benchmarks", "examples")
# Folders whose scripts import only the library. Benchmarks that drive a training
# script in-process import it and run as modules (`python -m benchmarks.<name>`).
LIBRARY_ONLY_DIRS = ("mnist", "cifar10", "imagenet_resnet", "examples")
# What a copy of the repository for a wheel build leaves out: environments, VCS and
# build outputs (a development checkout's egg-info manifest is kept: it must not add
# files to the wheel).
NOT_COPIED = ("env", ".git", ".venv*", "build", "dist", "__pycache__", ".hypothesis")
WHEEL_BUILD_TIMEOUT_S = 300


def pyproject() -> dict:
  with open(REPO / "pyproject.toml", "rb") as f:
    return tomllib.load(f)


def normalized(name: str) -> str:
  """A distribution name in PEP 503 normal form (`tf_keras` -> `tf-keras`)."""
  return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
  """The distribution a requirement string (`numpy>=1.26`) names."""
  return normalized(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group())


def requirements_file(path: pathlib.Path) -> set[str]:
  """The distributions a requirements file names, following `-r` includes."""
  names = set()
  for line in path.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line.startswith("-r "):
      names |= requirements_file(path.parent / line[len("-r "):].strip())
    elif line:
      names.add(requirement_name(line))
  return names


def top_level_imports(path: pathlib.Path) -> set[str]:
  """Top-level names of the absolute imports of a module, at any depth in its code."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      names.add(node.module.split(".")[0])
  return names


def is_test_code(path: pathlib.Path) -> bool:
  return path.name.endswith("_test.py") or TEST_SUPPORT_DIR in path.parents


def library_modules() -> list[pathlib.Path]:
  return [path for path in sorted(RIGL_DIR.rglob("*.py")) if not is_test_code(path)]


def third_party(names: set[str]) -> set[str]:
  return {name for name in names
          if name != FIRST_PARTY and name not in sys.stdlib_module_names}


def test_every_library_import_is_a_declared_dependency():
  declared = {requirement_name(r) for r in pyproject()["project"]["dependencies"]}
  providers = importlib.metadata.packages_distributions()
  undeclared = []
  for path in library_modules():
    for name in sorted(third_party(top_level_imports(path))):
      distributions = {normalized(d) for d in providers.get(name, [name])}
      if not distributions & declared:
        undeclared.append(f"{path.relative_to(REPO)}: {name} ({', '.join(distributions)})")
  assert not undeclared, "not in pyproject's dependencies:\n" + "\n".join(undeclared)


def test_test_tools_are_imported_only_by_tests():
  offenders = [f"{path.relative_to(REPO)}: {name}" for path in library_modules()
               for name in sorted(top_level_imports(path) & TEST_ONLY_MODULES)]
  assert not offenders, "test-only imports in library modules:\n" + "\n".join(offenders)


def test_requirement_files_pin_what_the_package_declares():
  project = pyproject()["project"]
  runtime = {requirement_name(r) for r in project["dependencies"]}
  tests = {requirement_name(r) for r in project["optional-dependencies"]["test"]}
  assert requirements_file(REPO / "requirements.txt") == runtime
  assert requirements_file(REPO / "requirements-test.txt") == runtime | tests


def test_scripts_import_only_the_library():
  script_packages = set(SCRIPT_DIRS)
  offenders = []
  for directory in LIBRARY_ONLY_DIRS:
    for path in sorted((REPO / directory).rglob("*.py")):
      if path.name.endswith("_test.py"):
        continue
      for name in sorted(top_level_imports(path) & script_packages):
        offenders.append(f"{path.relative_to(REPO)}: {name}")
  assert not offenders, "scripts must import only the rigl library:\n" + "\n".join(offenders)


def test_no_script_changes_the_import_path():
  offenders = [str(path.relative_to(REPO)) for directory in SCRIPT_DIRS
               for path in sorted((REPO / directory).rglob("*"))
               if path.is_file() and b"sys.path" in path.read_bytes()]
  assert not offenders


def test_wheel_holds_the_library_and_its_data_only(tmp_path):
  source = tmp_path / "source"
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_COPIED))
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                  "--wheel-dir", str(tmp_path / "dist"), str(source)],
                 check=True, capture_output=True, timeout=WHEEL_BUILD_TIMEOUT_S)
  (wheel,) = (tmp_path / "dist").glob("*.whl")
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
  metadata = {name for name in names if ".dist-info/" in name}
  expected = {str(path.relative_to(REPO)) for path in library_modules()}
  expected |= {str(path.relative_to(REPO)) for path in (RIGL_DIR / "data").glob("*.csv")}
  assert names - metadata == expected

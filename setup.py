"""Build hook: the wheel ships the library without its tests.

Everything else is configured in pyproject.toml. setuptools has no setting that leaves
modules of a package out, so `build_py` skips the `*_test` modules here (tests sit
beside the modules they test; the `rigl.testing` helpers are excluded in pyproject).
"""

from setuptools import setup
from setuptools.command.build_py import build_py

TEST_MODULE_SUFFIX = "_test"


class BuildPyWithoutTests(build_py):
  """`build_py` that leaves out test modules."""

  def find_package_modules(self, package, package_dir):
    modules = super().find_package_modules(package, package_dir)
    return [(pkg, module, path) for pkg, module, path in modules
            if not module.endswith(TEST_MODULE_SUFFIX)]


setup(cmdclass={"build_py": BuildPyWithoutTests})

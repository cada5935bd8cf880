"""Packaging detail pyproject.toml cannot say: the clone's top-level assets/ is shipped as the package data
folder mivis/_assets/ (found by mivis/paths.py), and every mivis sub-package is found at build time."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["mivis", "mivis.*"]) + ["mivis._assets"],
    package_dir={"mivis._assets": "assets"},
    package_data={"mivis._assets": ["*", "**/*"]},
    include_package_data=False,
)

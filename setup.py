"""Package layout (everything else is in pyproject.toml).

The repository keeps four top-level folders, but the wheel installs one import package: ``promptopt``
(the core, from ``promptopt/``) with ``promptopt.envs`` from ``envs/``, ``promptopt.policies`` from
``policies/`` and ``promptopt.experiments`` from ``experiments/``, so a project's own ``envs`` or
``experiments`` folder never shadows ours (or ours theirs). pyproject.toml cannot rename folders
into packages, hence this file; subpackages are found, never listed. Folders that hold only data
(catalogs, configs, sweeps) are namespace packages, so their files ship as package data.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {"promptopt.envs": "envs", "promptopt.policies": "policies", "promptopt.experiments": "experiments"}
SKIP = ["*__pycache__*"]

packages = find_namespace_packages(include=["promptopt", "promptopt.*"], exclude=SKIP)
package_dir = {"promptopt": "promptopt"}
for name, folder in MAPPED.items():
    package_dir[name] = folder
    packages += [name, *(f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=SKIP))]

setup(packages=packages, package_dir=package_dir)

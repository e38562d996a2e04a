"""Print the deps of every tox.ini environment, for ci/update-constraints (one source: tox.ini)."""

import configparser
from pathlib import Path

config = configparser.ConfigParser(interpolation=None)
config.read(Path(__file__).resolve().parent.parent / "tox.ini")
deps = set()
for section in config.sections():
    for line in config[section].get("deps", "").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            deps.add(line)
print("\n".join(sorted(deps)))

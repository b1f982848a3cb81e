"""``agentbridge new-channel NAME``: write a plugin distribution that works before it is edited.

The generated project installs with ``pip install -e .``, registers through the ``agentbridge``
entry-point group, and its test file runs the channel contract suite against a fake platform,
so an author starts from green tests and keeps them green while filling in the TODOs.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from agentbridge.plugin import templates as tpl

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
#: channel names the bridge itself registers: a plugin reusing one fails to load
RESERVED = frozenset({"local", "http", "scheduler", "web"})


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name) if part)


def scaffold_channel(name: str, dest: Path) -> Path:
    """Create ``dest/agentbridge-NAME`` and return it; refuse to touch an existing directory.

    :raises ValueError: ``name`` is not a lowercase identifier (``-``/``_`` allowed) or is a
        built-in channel's name.
    :raises FileExistsError: the project directory already exists.
    """
    if not _NAME.match(name):
        raise ValueError(
            f"channel name {name!r}: use lowercase letters, digits, '-' or '_', starting with a"
            " letter"
        )
    if name in RESERVED:
        raise ValueError(f"channel name {name!r} is taken by a built-in channel")
    pkg = "agentbridge_" + name.replace("-", "_")
    values = {"name": name, "pkg": pkg, "cls": _class_name(name)}
    root = dest / f"agentbridge-{name}"
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another --dest or remove it")
    files = {
        "pyproject.toml": tpl.PYPROJECT,
        "README.md": tpl.README,
        f"src/{pkg}/__init__.py": tpl.INIT,
        f"src/{pkg}/py.typed": "",
        f"src/{pkg}/plugin.py": tpl.PLUGIN,
        f"src/{pkg}/channel.py": tpl.CHANNEL,
        "tests/test_contract.py": tpl.TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return root

"""The package's top level: its public names, and that importing it stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import contrastive


def test_importing_the_package_or_its_command_line_loads_no_torch() -> None:
    # The command line starts the --time-budget clock once the package is imported; torch
    # and Lightning (5-7 s on 2 cores) must load after that, inside the command.
    code = "import sys, contrastive, contrastive.cli; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", contrastive.__all__)
def test_every_public_name_is_the_object_of_its_home_module(name: str) -> None:
    home = importlib.import_module(contrastive._HOMES[name])
    assert getattr(contrastive, name) is getattr(home, name)
    assert name in dir(contrastive)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        contrastive.no_such_thing  # noqa: B018
    assert not hasattr(contrastive, "no_such_thing")

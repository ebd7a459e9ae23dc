"""Package names that load on first use."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator

import pytest

import contrastive
from contrastive.lazy_names import lazy_names


@pytest.fixture
def package() -> Iterator[types.ModuleType]:
    module = types.ModuleType("lazy_test_package")
    module.__getattr__, module.__dir__ = lazy_names(module.__name__, {"dumps": "json"})
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_a_name_loads_from_its_home_and_stays(package: types.ModuleType) -> None:
    assert "dumps" not in vars(package)
    assert package.dumps is json.dumps
    assert vars(package)["dumps"] is json.dumps  # later lookups skip the loader


def test_an_unknown_name_is_an_attribute_error_naming_the_package(
    package: types.ModuleType,
) -> None:
    with pytest.raises(AttributeError, match="'lazy_test_package' has no attribute 'loads'"):
        package.loads  # noqa: B018
    assert not hasattr(package, "loads")


def test_dir_lists_the_names_before_they_load(package: types.ModuleType) -> None:
    assert "dumps" in dir(package)


@pytest.mark.parametrize(
    "package_name",
    [
        "contrastive",
        "contrastive.curation",
        "contrastive.evaluation",
        "contrastive.losses",
        "contrastive.methods",
        "contrastive.training",
        "contrastive.views",
    ],
)
def test_every_public_name_of_the_lazy_packages_loads(package_name: str) -> None:
    module = sys.modules.get(package_name) or __import__(package_name, fromlist=["_"])
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
    assert contrastive.__version__

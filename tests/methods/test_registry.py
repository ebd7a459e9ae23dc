"""The method names read without torch agree with the method classes."""

from __future__ import annotations

from contrastive.methods import METHODS
from contrastive.methods.config import MEMORY_BANK_METHODS, METHOD_NAMES


def test_the_names_are_the_registered_methods() -> None:
    assert tuple(METHODS) == METHOD_NAMES


def test_the_memory_bank_methods_are_the_classes_that_use_one() -> None:
    using = {name for name, method in METHODS.items() if method.uses_memory_bank}
    assert using == MEMORY_BANK_METHODS == {"moco"}

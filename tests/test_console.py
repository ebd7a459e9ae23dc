"""Where nobody configured logging (a notebook), a run shows its own messages, not Lightning's."""

from __future__ import annotations

import logging

import pytest

from contrastive.console import show_messages


def test_messages_are_shown_once_and_lightning_info_is_hidden(
    unconfigured: None, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Here, not in the fixture: pytest adds its capture handler to the root for each phase.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    show_messages()
    show_messages()  # a second run adds no second handler
    logging.getLogger("contrastive.training.budget").info("time budget 20s: 194 steps")
    logging.getLogger("lightning.pytorch").info("GPU available: False, used: False")
    # Before: nothing of ours (Python shows warnings only), and Lightning's banner.
    assert capsys.readouterr().err == "time budget 20s: 194 steps\n"
    # A warning says it is one, as Python's warnings do: one grep finds them all in a log.
    logging.getLogger("contrastive.cli.embed").warning("3 rows name no image")
    logging.getLogger("contrastive.training").warning("warning: said already")
    assert capsys.readouterr().err == "warning: 3 rows name no image\nwarning: said already\n"


def test_configured_logging_is_left_alone(
    unconfigured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    show_messages()
    assert logging.getLogger("contrastive").handlers == []
    assert logging.getLogger("lightning.pytorch").level == logging.INFO

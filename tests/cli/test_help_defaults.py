"""Every command's ``--help`` renders and shows the defaults a user would otherwise guess."""

from __future__ import annotations

import argparse

from contrastive.cli import build_parser


def _parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _parsers(child)
    return found


def test_every_help_renders_with_defaults_and_without_empty_ones() -> None:
    parsers = _parsers(build_parser())
    assert {"contrastive eval knn", "contrastive eval fewshot", "contrastive curate"} <= set(
        parsers
    )
    texts = {prog: " ".join(parser.format_help().split()) for prog, parser in parsers.items()}
    for prog, text in texts.items():
        assert "(default: None)" not in text and "(default: False)" not in text, prog
    assert "vote temperature T (default: 0.1)" in texts["contrastive eval knn"]
    assert "(default: 1e-06,1e-05,0.0001,0.001,0.01,0.1)" in texts["contrastive eval linear"]
    assert "few-label" in texts["contrastive"]
    # Options whose help already says its default are left as written.
    assert texts["contrastive eval knn"].count("(default:") == texts["contrastive eval knn"].count(
        "default"
    )

"""``python -m jaxzoo``'s command line speaks one language: one spelling per option across the
subcommands (``--batch-size``, ``--image-size``; the short forms are aliases), help text for
every argument, and one exit-code policy (1 for a user error, 2 for usage)."""
import argparse

import pytest

from jaxzoo.__main__ import build_parser, main


def _subparsers():
    parser = build_parser()
    action, = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_argument_has_help():
    missing = [f"{name} {a.option_strings or a.dest}" for name, sub in _subparsers().items()
               for a in sub._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing


def test_one_spelling_per_option_across_subcommands():
    """The same destination is spelled the same way wherever it appears: a batch is
    --batch-size, an input side --image-size (their short forms are aliases of those)."""
    spellings = {}
    for sub in _subparsers().values():
        for a in sub._actions:
            long = [o for o in a.option_strings if o.startswith("--")]
            if long:
                spellings.setdefault(a.dest, set()).add(long[0])
    assert spellings["batch_size"] == {"--batch-size"}
    assert spellings["image_size"] == {"--image-size"}
    assert "batch" not in spellings and "size" not in spellings
    assert all(len(first) == 1 for first in spellings.values()), spellings


@pytest.mark.parametrize("command", [["check", "resnet18"], ["bench"],
                                     ["predict", "--workdir", "x"]])
def test_the_short_forms_are_aliases(command):
    args = build_parser().parse_args([*command, "--batch", "8", "--size", "64"])
    assert args.batch_size == 8 and args.image_size == 64


def test_usage_errors_exit_2_and_user_errors_exit_1(capsys):
    with pytest.raises(SystemExit) as usage:
        main(["check"])  # the model is missing: argparse's usage error
    assert usage.value.code == 2
    assert main(["list", "no_such_model"]) == 1
    assert "error: no model matches no_such_model" in capsys.readouterr().err

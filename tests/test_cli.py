"""The command line: one table of commands drives the parser and the dispatch; bad input is one line with
exit status 2, a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trytry_reid.errors import UsageError
from trytry_reid.jobs import cli

REPO = Path(__file__).resolve().parents[1]


def test_every_command_in_the_table_is_parsed_and_dispatched(monkeypatch):
    called = []
    for name, command in cli.COMMANDS.items():
        monkeypatch.setitem(cli.COMMANDS, name, command._replace(run=lambda args, n=name: called.append(n) or 0))
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 (a test may look)
    assert list(subparsers.choices) == list(cli.COMMANDS)
    assert cli.main(["serve", "--index", "x"]) == 0 and called == ["serve"]


def test_bad_input_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    def bad_input(args):
        raise UsageError("the flags do not fit together")

    def bug(args):
        raise KeyError("a key the code forgot")

    monkeypatch.setitem(cli.COMMANDS, "tsne", cli.COMMANDS["tsne"]._replace(run=bad_input))
    assert cli.main(["tsne", "--config", "c.yml", "--checkpoint", "x.pt"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "trytry-reid tsne: error: the flags do not fit together"
    monkeypatch.setitem(cli.COMMANDS, "tsne", cli.COMMANDS["tsne"]._replace(run=bug))
    with pytest.raises(KeyError, match="a key the code forgot"):
        cli.main(["tsne", "--config", "c.yml", "--checkpoint", "x.pt"])


def test_main_py_trains_by_default_and_knows_every_command():
    sys.path.insert(0, str(REPO))
    try:
        import main as entry
    finally:
        sys.path.remove(str(REPO))
    assert entry.with_defaults([])[:2] == ["train", "--config"]
    assert entry.with_defaults(["data.root=x"])[0] == "train"
    for name in cli.COMMANDS:
        assert entry.with_defaults([name, "--help"])[0] == name
    help_text = subprocess.run([sys.executable, str(REPO / "main.py"), "--help"], capture_output=True, text=True)
    assert all(name in help_text.stdout for name in cli.COMMANDS)


def test_flag_choices_are_the_code_catalogs():
    """The CLI spells its choices out (importing the catalogs would load torch for `--help`); they must stay
    the catalogs' names."""
    from trytry_reid.data.validate import POLICIES
    from trytry_reid.serving.search import BACKENDS
    from trytry_reid.visualization.query_choice import QUERY_STRATEGIES

    def choices(command: str, flag: str) -> list[str]:
        parser = cli.build_parser()
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        return list(next(a for a in sub._actions if flag in a.option_strings).choices)

    assert choices("rank", "--queries") == list(QUERY_STRATEGIES)
    assert choices("index", "--backend") == list(BACKENDS)
    assert choices("index", "--on-bad-image") == list(POLICIES) == choices("extract", "--on-bad-image")
    from trytry_reid.jobs.zoo_import import PEERS
    from trytry_reid.models.zoo_fastreid import POOLINGS

    assert choices("import", "--from") == list(PEERS) and choices("import", "--pooling") == list(POOLINGS)


def test_an_error_raised_in_a_loader_worker_is_one_line():
    import torch
    from torch.utils.data import DataLoader

    from trytry_reid.data.images import ImageReadError

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise ImageReadError("cannot read image '/data/x.jpg': truncated file")

    with pytest.raises(ImageReadError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    assert cli.own_message(caught.value) == "cannot read image '/data/x.jpg': truncated file"
    assert cli.own_message(UsageError("plain")) == "plain"

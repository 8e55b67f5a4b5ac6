"""The runtime install (`pip install 'fashionstream[all]'`, pyproject.toml) has no torch,
torchvision or onnx: the commands that need them (`train ...`, `eval ...`, `import detector`,
`bench similar`) must say in one line that they need `fashionstream[train]` and exit 2, not end
in a traceback, and the commands the runtime install runs must not be refused."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from importlib.machinery import ModuleSpec

import pytest

from fashionstream.app.cli import build_parser
from fashionstream.app.extras import (
    EXIT_WITHOUT_STACK,
    TRAINING_STACK,
    NeedsTrainingStack,
    ensure_training_stack,
    missing_modules,
)
from fashionstream.core.settings import REPO_ROOT, Settings
from tests.unit.test_install import BLOCKER

# each guarded command with the fewest arguments its parser takes
GUARDED = {
    "train attributes": [],
    "train detector": ["--ccp", "ccp"],
    "train people": ["--data", "people"],
    "train embedding": [],
    "eval attributes": ["--folders", "clothing-small"],
    "eval detector": ["--ccp", "ccp"],
    "eval people": ["--coco", "people.json", "--images", "images"],
    "eval similar": ["--index", "rest", "--queries", "held_out"],
    "bench similar": [],
    "import detector": ["yolox_nano", "--file", "model.onnx"],
    "export graphs": [],
}
# what the runtime install runs: never refused before they start (bench tagger refuses only
# when a torch backend is asked for, inside its handler)
RUNTIME = {
    "worker",
    "api",
    "demo",
    "report",
    "track",
    "annotate",
    "eval association",
    "similar",
    "produce images",
    "produce video",
    "up",
    "down",
    "settings",
    "bench video",
    "bench live",
    "bench pipeline",
    "bench tagger",
    "data people",
    "data split-catalogue",
}


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[str, object]]:
    """Every runnable command line's words and its handler."""
    # argparse keeps its sub-commands only in private attributes
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield " ".join(words), parser.get_default("func")
        return
    for name, child in groups[0].choices.items():
        yield from _commands(child, (*words, name))


def test_the_training_commands_are_guarded_and_the_runtime_ones_are_not() -> None:
    handlers = dict(_commands(build_parser()))
    assert set(GUARDED) <= set(handlers), sorted(set(GUARDED) - set(handlers))
    assert set(RUNTIME) <= set(handlers), sorted(set(RUNTIME) - set(handlers))
    for command in GUARDED:
        handler = handlers[command]
        assert isinstance(handler, NeedsTrainingStack), command
        # the line it writes names the command that was typed
        assert handler.command == command
    for command in RUNTIME:
        assert not isinstance(handlers[command], NeedsTrainingStack), command


def _half_removed() -> types.ModuleType:
    module = types.ModuleType("fashionstream_half_removed")
    module.__spec__ = None
    return module


class _Refuser:
    """An import hook that refuses one name, as tests/unit/test_install.py's Blocker does."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name == "fashionstream_refused":
            raise ImportError(f"{name} is refused")
        return None  # the next finder's turn


@pytest.mark.parametrize(
    ("modules", "missing"),
    [
        (("json", "argparse"), []),
        (("json", "fashionstream_no_such_module"), ["fashionstream_no_such_module"]),
        (("fashionstream_refused", "json"), ["fashionstream_refused"]),
        (("fashionstream_half_removed",), ["fashionstream_half_removed"]),
        ((), []),
    ],
    ids=["installed", "not-installed", "import-hook-refuses", "no-spec", "none-asked"],
)
def test_missing_modules(
    monkeypatch: pytest.MonkeyPatch, modules: tuple[str, ...], missing: list[str]
) -> None:
    monkeypatch.setattr(sys, "meta_path", [_Refuser(), *sys.meta_path])
    monkeypatch.setitem(sys.modules, "fashionstream_half_removed", _half_removed())
    assert missing_modules(modules) == missing
    # nothing was imported to find out
    assert "fashionstream_no_such_module" not in sys.modules


def test_ensure_training_stack_writes_one_line_only_when_something_is_missing() -> None:
    quiet = io.StringIO()
    assert ensure_training_stack("train detector", ("json",), stderr=quiet)
    assert quiet.getvalue() == ""

    told = io.StringIO()
    assert not ensure_training_stack(
        "train detector", ("json", "fashionstream_no_such_module"), stderr=told
    )
    assert told.getvalue() == (
        "fashionstream train detector needs the training stack (missing here: "
        "fashionstream_no_such_module): pip install 'fashionstream[train]' (from a clone: "
        "pip install -e '.[train]')\n"
    )


@pytest.mark.parametrize("installed", [True, False], ids=["stack-here", "stack-missing"])
def test_a_guarded_handler_runs_only_with_the_stack(
    capsys: pytest.CaptureFixture[str], installed: bool
) -> None:
    calls: list[tuple[Settings, argparse.Namespace]] = []

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        calls.append((settings, args))
        return 7

    modules = ("json",) if installed else ("fashionstream_no_such_module",)
    guarded = NeedsTrainingStack("eval people", handler, modules)
    settings, args = Settings(), argparse.Namespace(limit=3)
    code = guarded(settings, args)
    err = capsys.readouterr().err
    if installed:
        assert (code, calls, err) == (7, [(settings, args)], "")
    else:
        assert (code, calls) == (EXIT_WITHOUT_STACK, [])
        assert err.startswith("fashionstream eval people needs the training stack")


# runs every guarded command, and `settings` as a runtime one, in a fresh interpreter whose
# imports of the training stack fail: blocked by an import hook (tests/unit/test_install.py), or
# absent as in a runtime install (find_spec answers None, `import` raises ModuleNotFoundError)
RUN_COMMANDS = """
import contextlib, io, json
from fashionstream.app.cli import main

results = {{}}
for words, extra in {commands!r}.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*words.split(), *extra])
    results[words] = [code, err.getvalue()]
print(json.dumps(results))
"""
ABSENT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
"""


@pytest.mark.parametrize("how", ["blocked", "absent"])
def test_without_the_training_stack_each_guarded_command_says_so_in_one_line(how: str) -> None:
    without = (BLOCKER if how == "blocked" else ABSENT).format(blocked=TRAINING_STACK)
    commands = {**GUARDED, "settings": []}
    script = textwrap.dedent(without) + RUN_COMMANDS.format(commands=commands)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert results.pop("settings")[0] == 0
    for command, (code, err) in results.items():
        assert code == EXIT_WITHOUT_STACK, (command, err)
        assert "Traceback" not in err, err
        assert err.count("\n") == 1, err
        assert err.startswith(f"fashionstream {command} needs the training stack"), err
        # every package of the stack is named, blocked or absent alike
        assert f"(missing here: {', '.join(TRAINING_STACK)})" in err, err
        assert "pip install 'fashionstream[train]'" in err, err

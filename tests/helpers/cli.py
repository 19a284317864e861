"""The holdshelf command run in-process, as a shell would see it: exit status, stdout, stderr."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from holdshelf.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


class Cli:
    def __init__(self, instance: Path, capsys, monkeypatch) -> None:
        self.instance = instance
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.outputs: list[str] = []

    def __call__(self, *args: str, stdin: str = "") -> Result:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            main(["--instance", str(self.instance), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self.capsys.readouterr()
        self.outputs += [captured.out, captured.err]
        return Result(code, captured.out, captured.err)

    def ok(self, *args: str, stdin: str = "") -> Result:
        result = self(*args, stdin=stdin)
        assert result.code == 0, result.err
        return result

    def fails(self, *args: str, message: str, stdin: str = "") -> Result:
        result = self(*args, stdin=stdin)
        assert result.code == 1
        assert result.out == ""
        assert result.err.startswith("error: ")
        assert result.err.count("\n") == 1, "an error is exactly one line"
        assert "Traceback" not in result.err
        assert message in result.err
        return result

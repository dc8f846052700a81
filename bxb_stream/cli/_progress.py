"""One rich progress bar on stderr, shown only when stderr is a terminal (a bar in a log is noise)."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """``with ProgressBar(console, "objects", quiet) as bar: bar.total(n); bar.update(done, note)``."""

    def __init__(self, console: Any, what: str, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn(what),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        )
        self.task = self.bar.add_task(what, total=None, note="")

    def __enter__(self) -> ProgressBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def total(self, n: int) -> None:
        self.bar.update(self.task, total=n)

    def update(self, done: int, note: str = "") -> None:
        self.bar.update(self.task, completed=done, note=note)

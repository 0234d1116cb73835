"""What a build reports (both backends' builds), and the progress callback they take."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Called as (stage, done, total) for progress bars.
Progress = Callable[[str, int, int], None]


@dataclass
class BuildReport:
    """What a build did, for the CLI summary and the benchmark."""

    indexed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    generation: str = ""
    compacted: bool = False
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - t0

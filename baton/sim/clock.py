"""The simulated clock: the only time the simulated network knows (no wall clock anywhere in a run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class SimClock:
    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = start
        self.now = start

    @property
    def elapsed_s(self) -> float:
        return (self.now - self.start).total_seconds()

    def at(self, seconds: float) -> datetime:
        """The moment ``seconds`` after the start of the run."""
        return self.start + timedelta(seconds=seconds)

    def advance_to(self, moment: datetime) -> None:
        self.now = max(self.now, moment)

    def monotonic(self) -> float:
        """Seconds since the start (what services read instead of ``time.monotonic``)."""
        return self.elapsed_s

    @staticmethod
    def ms(moment: datetime) -> int:
        return int(moment.timestamp() * 1000)


__all__ = ["EPOCH", "SimClock"]

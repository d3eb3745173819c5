"""The debouncer, on a fake clock: when is a path handed on, and how often."""

from __future__ import annotations

from imgwatch.daemon.debounce import Debouncer, Signature


class World:
    """A fake clock and fake file signatures."""

    def __init__(self) -> None:
        self.now = 0.0
        self.files: dict[str, Signature] = {}

    def clock(self) -> float:
        return self.now

    def look(self, key: str) -> Signature:
        return self.files.get(key)

    def debouncer(self, quiet: float = 1.0, max_wait: float = 60.0) -> Debouncer:
        return Debouncer(self.look, quiet=quiet, max_wait=max_wait, settle=0.2, clock=self.clock)


def run(world: World, d: Debouncer, until: float, step: float = 0.05) -> list[tuple[float, str]]:
    """Advance the clock, collecting (time, key) for every key handed on."""
    out = []
    while world.now < until:
        world.now = round(world.now + step, 6)
        out += [(world.now, key) for key in d.due(100)]
    return out


def test_quiet_period_then_two_equal_looks() -> None:
    w = World()
    d = w.debouncer()
    w.files["a"] = (10, 1)
    d.touch("a")
    handed = run(w, d, 3.0)
    assert [k for _, k in handed] == ["a"]
    assert 1.2 <= handed[0][0] < 1.3  # quiet 1 s, then a second look 0.2 s later
    assert len(d) == 0


def test_every_event_pushes_the_deadline_back() -> None:
    w = World()
    d = w.debouncer()
    w.files["a"] = (10, 1)
    d.touch("a")
    for t in (0.5, 1.0, 1.5):
        run(w, d, t)
        d.touch("a")
    handed = run(w, d, 4.0)
    assert [k for _, k in handed] == ["a"]
    assert handed[0][0] >= 2.7


def test_a_close_takes_the_fast_path() -> None:
    w = World()
    d = w.debouncer()
    w.files["a"] = (10, 1)
    d.touch("a", writing=True)
    d.touch("a", closed=True)
    handed = run(w, d, 2.0, step=0.01)
    assert [k for _, k in handed] == ["a"]
    assert handed[0][0] <= 0.06  # one look, 50 ms after the close


def test_an_event_after_the_close_cancels_the_fast_path() -> None:
    w = World()
    d = w.debouncer()
    w.files["a"] = (10, 1)
    d.touch("a", closed=True)
    d.touch("a", writing=False)  # reopened and touched again (no close seen yet)
    handed = run(w, d, 3.0, step=0.01)
    assert handed and handed[0][0] >= 1.0  # back to the quiet period and two looks


def test_a_closed_file_that_is_gone_is_confirmed_twice() -> None:
    w = World()
    d = w.debouncer()
    d.touch("x", closed=True)  # closed, then deleted before the look
    handed = run(w, d, 1.0, step=0.01)
    assert handed and handed[0][0] >= 0.2


def test_a_file_open_for_writing_waits_for_its_close_whatever_the_pauses() -> None:
    w = World()
    d = w.debouncer(quiet=0.3, max_wait=60)
    for t in range(10):  # a chunk every second, longer than the quiet period
        w.files["slow"] = (t, t)
        d.touch("slow", writing=True)
        assert run(w, d, t + 1.0) == []
    d.touch("slow", closed=True)
    assert [k for _, k in run(w, d, 11.0)] == ["slow"]


def test_a_change_between_the_two_looks_means_another_wait() -> None:
    w = World()
    d = w.debouncer()
    w.files["a"] = (10, 1)
    d.touch("a")
    run(w, d, 1.1)  # first look done
    w.files["a"] = (20, 2)  # grew without an event (a poller's blind spot)
    handed = run(w, d, 3.0)
    assert [k for _, k in handed] == ["a"]
    assert handed[0][0] >= 1.4


def test_max_wait_caps_a_file_that_never_settles() -> None:
    w = World()
    d = w.debouncer(quiet=1.0, max_wait=5.0)
    counter = iter(range(10_000))

    def always_changing(_key: str) -> Signature:
        n = next(counter)
        return (n, n)

    d._look = always_changing
    d.touch("busy")
    handed = run(w, d, 10.0)
    assert [k for _, k in handed] == ["busy"]
    assert 5.0 <= handed[0][0] <= 5.5


def test_a_deleted_path_is_handed_on_once_confirmed_gone() -> None:
    w = World()
    d = w.debouncer()
    d.touch("gone")
    assert [k for _, k in run(w, d, 2.0)] == ["gone"]


def test_a_busy_path_stays_pending() -> None:
    w = World()
    d = w.debouncer()
    w.files["a"] = (1, 1)
    d.touch("a")
    busy = {"a"}
    for _ in range(60):
        w.now += 0.05
        assert d.due(10, busy=lambda k: k in busy) == []
    busy.clear()
    assert [k for _, k in run(w, d, w.now + 1.0)] == ["a"]


def test_limit_and_next_deadline() -> None:
    w = World()
    d = w.debouncer()
    for i in range(10):
        w.files[str(i)] = (i, i)
        d.touch(str(i))
    assert d.next_deadline() == 1.0
    w.now = 1.1
    assert len(d.due(3)) == 0  # first looks only
    handed = []
    while len(d):
        w.now += 0.25
        batch = d.due(3)
        assert len(batch) <= 3
        handed += batch
    assert sorted(handed) == sorted(str(i) for i in range(10))
    assert d.next_deadline() is None

"""Progress reporters are passed in: a run reports every seed-step once to whatever reporter it is given."""

import jumpsim
from jumpsim import progress


class Recorder(progress.NoProgress):
    quiet = False

    def __init__(self):
        self.events = []

    def start(self, total, desc):
        self.events.append(("start", total, desc))

    def update(self, n):
        self.events.append(("update", n))

    def close(self):
        self.events.append(("close",))


def test_reporter_choices():
    assert isinstance(progress.reporter(True), progress.TqdmProgress)
    assert type(progress.reporter(False)) is progress.NoProgress and progress.reporter(False).quiet
    r = Recorder()
    assert progress.reporter(r) is r


def test_a_run_reports_every_seed_step_to_the_reporter_it_is_given(tiny, tmp_path):
    cfg = tiny("run.chunk=5", "run.trace_seeds=0")
    rec = Recorder()
    jumpsim.run([cfg], tmp_path / "d", progress=rec)
    (start,) = [e for e in rec.events if e[0] == "start"]
    assert start[1] == cfg.run.seeds * cfg.train.steps and cfg.config_id in start[2]
    assert sum(e[1] for e in rec.events if e[0] == "update") == cfg.run.seeds * cfg.train.steps
    assert rec.events[-1] == ("close",)

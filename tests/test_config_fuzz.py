"""Property tests: no config input, however malformed, gets past validation as a traceback.

Every generated input must either validate (exit 0; the simulation itself is stubbed out
here) or exit 2 with one line on stderr. Hypothesis runs a fixed number of examples with
derandomize=True, so the test is deterministic.
"""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jumpsim import cli, runner
from jumpsim import config as config_lib

KEYS = [f"{s}.{f}" for s, cls in config_lib.SECTIONS.items() for f in cls.__dataclass_fields__] + [
    "name",
    "train.lr.kind",
    "train.lr.values",
    "train.ridge.period",
    "sweep.model.depth",
    "problem",
    "bogus.key",
]
values = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf").replace("nan", "nan")),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(string.printable, max_size=12),
    st.lists(st.integers(-5, 5), max_size=4).map(str),
    st.sampled_from(['"full"', '"gd"', '"file"', '"float64"', '"sum"', '{kind = "periodic"}', "[", '"', "''", "1e400"]),
)
FUZZ = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def no_sim(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "run", lambda *a, **k: (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.chdir(tmp_path)


def _exit_code(args, capsys):
    try:
        code = cli.main(args)
    except SystemExit as e:  # the stubbed simulation: the config was valid
        code = e.code
    err = capsys.readouterr().err
    if code == 2:
        assert err.strip().count("\n") == 0 and err.startswith("jumpsim: error: ") and "Traceback" not in err, err
    else:
        assert code == 0, (code, err)
    return code


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_fuzzed_overrides_validate_or_exit_2(no_sim, capsys, pairs):
    args = ["run", "--quiet"]
    for k, v in pairs:
        args += ["--set", f"{k}={v}"]
    _exit_code(args, capsys)


@FUZZ
@given(st.text(max_size=200))
def test_fuzzed_toml_files_validate_or_exit_2(no_sim, capsys, tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else p.write_bytes(b"\xff")
    _exit_code(["run", str(p), "--quiet"], capsys)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(list(config_lib.SECTIONS)),
        st.dictionaries(
            st.sampled_from(["n", "m", "rank", "depth", "lr", "every", "seeds", "x"]),
            st.one_of(st.integers(-3, 50), st.floats(-1, 2), st.text(max_size=3)),
            max_size=3,
        ),
        max_size=3,
    )
)
def test_fuzzed_structured_configs_raise_only_config_error(tables):
    try:
        config_lib.expand(tables)
    except config_lib.ConfigError as e:
        assert "\n" not in str(e) and str(e)

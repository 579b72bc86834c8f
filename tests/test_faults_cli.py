"""Regressions of the command line's hostile-input faults (issue 11, items 14, 15, 17):
each test failed before its fix."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rnnx
from rnnx.training.history import COLUMNS
from rnnx.cli.main import main

HUGE = {"--hidden": "100000000", "--length": "100000000", "--batch-size": "1000000000"}


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# --- item 14: sizes that cannot fit ---------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "diagnose"])
@pytest.mark.parametrize("flag", sorted(HUGE))
def test_huge_sizes_are_refused_in_one_line_before_allocating(command, flag, capsys):
    argv = [command, flag, HUGE[flag]] + (["--steps", "1"] if command == "train" else [])
    assert main(argv) == 1
    _one_line_error(capsys, "memory", f"{flag} {HUGE[flag]}", "this machine has")


# --- item 14: rnnx plot on files it cannot read ---------------------------------------------

def _train_log(path):
    task = rnnx.tasks.make("adding", 10)
    model = rnnx.RNN(task.input_size, 4, task.output_size, readout=task.readout, seed=0)
    rnnx.Trainer(model, rnnx.SGD(lr=0.1), loss=task.loss, log_path=path, progress=False,
                 seed=0).fit(task, steps=5, batch_size=2)
    return path


def test_plot_a_log_whose_file_name_is_not_utf8(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log = Path(os.fsdecode(bytes(tmp_path) + b"/r\xffun.csv"))
    _train_log(log)
    assert main(["plot", str(log), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "grad_norms.png").exists()
    junk = Path(os.fsdecode(bytes(tmp_path) + b"/j\xffunk.csv"))
    junk.write_bytes(b"\xb5\x00garbage\n")
    assert main(["plot", str(junk)]) == 1
    _one_line_error(capsys, "j\\xffunk.csv", "not UTF-8")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_plot_garbage_names_the_file(tmp_path, capsys, suffix):
    rng = np.random.default_rng(0)
    for i, content in enumerate([rng.bytes(300), b"\xff\xfe\x00binary\n",
                                 b"step,loss\n1,2\x00,3\n" if suffix == ".csv" else b"[1, 2]\n"]):
        log = tmp_path / f"g{i}{suffix}"
        log.write_bytes(content)
        assert main(["plot", str(log)]) == 1
        _one_line_error(capsys, str(log))


def test_plot_a_torn_last_field_names_the_file_line_and_column(tmp_path, capsys):
    log = _train_log(tmp_path / "run.csv")
    lines = log.read_text().splitlines()
    header, fields = lines[0].split(","), lines[-1].split(",")
    # the last numeric column (text columns such as blame_rows may follow it)
    k = max(i for i, name in enumerate(header) if COLUMNS.get(name, "float") != "str")
    fields[k] = "na"                                   # the "nan" of a torn write
    log.write_text("\n".join(lines[:-1] + [",".join(fields)]) + "\n")
    assert main(["plot", str(log)]) == 1
    _one_line_error(capsys, str(log), f"line {len(lines)}", repr(header[k]), "'na'")
    # the same line cut short by a kill (no newline yet) is dropped, the rest is read
    log.write_text("\n".join(lines[:-1] + [",".join(fields)]))
    assert len(rnnx.load_history(log)) == len(lines) - 2


def test_plot_a_corrupt_delta_norms_file_names_it(tmp_path, capsys):
    log = _train_log(tmp_path / "run.csv")
    (tmp_path / "run.delta_norms.npy").write_bytes(b"\x93NUMPY garbage")
    assert main(["plot", str(log)]) == 1
    _one_line_error(capsys, "run.delta_norms.npy")


# --- item 14: diagnose --plot DIR, --spectral-radius 1e308 ----------------------------------

@pytest.mark.parametrize("kind", ["folder", "no suffix"])
def test_diagnose_plot_prints_the_file_it_wrote(tmp_path, capsys, kind):
    pytest.importorskip("matplotlib")
    target = tmp_path / "figs"
    if kind == "folder":
        target.mkdir()
    assert main(["diagnose", "--length", "10", "--hidden", "4", "--plot", str(target)]) == 0
    shown = re.search(r"^figure: (.*)$", capsys.readouterr().out, re.M).group(1)
    assert Path(shown).is_file() and Path(shown).read_bytes()[:4] == b"\x89PNG"
    assert main(["diagnose", "--length", "10", "--hidden", "4", "--json",
                 "--plot", str(target)]) == 0
    assert f'"plot": "{shown}"' in capsys.readouterr().out


def test_diagnose_plot_into_a_missing_folder_fails_before_the_work(tmp_path, capsys):
    assert main(["diagnose", "--plot", str(tmp_path / "no" / "d.png")]) == 1
    _one_line_error(capsys, "--plot", "no folder")


@pytest.mark.parametrize("argv", [
    ["train", "--spectral-radius", "1e308", "--steps", "1"],
    ["diagnose", "--spectral-radius", "1e308"],
    ["train", "--init", "gaussian", "--std", "1e300", "--steps", "1"]])
def test_an_init_that_overflows_blames_the_flag(argv, capsys):
    assert main(argv) == 2
    err = _one_line_error(capsys, argv[-2] if argv[0] == "diagnose" else argv[-4])
    assert "params['W_hh']" not in err and "RuntimeWarning" not in err


# --- item 14: a reader that goes away -------------------------------------------------------

@pytest.mark.parametrize("argv", [["diagnose", "--json", "--length", "10"],
                                  ["diagnose", "--length", "10"]])
def test_a_closed_pipe_ends_quietly_like_sigpipe(argv, tmp_path):
    # `rnnx diagnose --json | head`: the reader is gone before rnnx writes
    proc = subprocess.Popen([sys.executable, "-m", "rnnx"] + argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


# --- item 15: import rnnx from the root of a clone ------------------------------------------

def test_import_from_a_source_tree_says_what_happened_and_what_to_do(tmp_path):
    # a clone's root: the package's Python files without the compiled extensions, first
    # on sys.path; -S keeps an editable install's import hook out, PYTHONPATH finds numpy
    source = Path(rnnx.__file__).parent
    shutil.copytree(source, tmp_path / "rnnx", ignore=shutil.ignore_patterns(
        "_core*.so", "_core*.pyd", "_updates*.so", "_updates*.pyd", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(Path(np.__file__).parent.parent))
    r = subprocess.run([sys.executable, "-S", "-c", "import rnnx"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "circular import" not in r.stderr
    for needle in ("compiled core", "source tree", "pip install", "python -m pytest"):
        assert needle in last, (needle, last)


# --- item 17: every option shows its default ------------------------------------------------

def _option_blocks(text):
    """(first line, whole help text) of every option that takes a value."""
    blocks, current = [], None
    for line in text.splitlines():
        if re.match(r"^  -", line):
            current = [line]
            blocks.append(current)
        elif current is not None and line.startswith("      ") and line.strip():
            current.append(line)
        else:
            current = None
    return [(b[0], " ".join(s.strip() for s in b)) for b in blocks
            if re.match(r"^  (-\w[ ,] ?)?(--[\w-]+)(,? -\w)? [A-Z{]", b[0])]


@pytest.mark.parametrize("command", ["demo", "train", "diagnose", "plot"])
def test_help_shows_the_default_of_every_option(command, capsys):
    assert main([command, "--help"]) == 0
    blocks = _option_blocks(capsys.readouterr().out)
    assert blocks
    for first, text in blocks:
        assert "default" in text, first


def test_help_shows_the_defaults_the_issue_named(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    text = " ".join(out[out.index("options:"):].split())       # past the usage line
    for option, default in (("--hidden HIDDEN", "32"), ("--steps STEPS", "500"),
                            ("--batch-size BATCH_SIZE", "32"), ("--clip {", "none"),
                            ("--optimizer {", "sgd")):
        after = text[text.index(option):]
        assert re.search(r"\(default: ([^)]*)\)", after).group(1).startswith(default)

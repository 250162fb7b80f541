"""The output rule (resnet.io.write_output): atomic, never through a link, never over a file resnet did not
write (``--force``), a full disk keeps the previous file; and every subcommand that writes a file obeys it."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from resnet.errors import UserError
from resnet.io import MANIFEST, replacing, write_cache, write_output

FOREIGN = b"the user's own file\n"


# --- the rule itself ----------------------------------------------------------------------------------------


def test_a_new_file_is_written_and_recorded(tmp_path: Path):
    write_output(tmp_path / "a.txt", "one")
    assert (tmp_path / "a.txt").read_text() == "one"
    assert "a.txt" in (tmp_path / MANIFEST).read_text()
    write_output(tmp_path / "a.txt", "two")  # our own earlier output, unchanged since: replaced
    assert (tmp_path / "a.txt").read_text() == "two"


def test_a_file_resnet_did_not_write_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(FOREIGN)
    with pytest.raises(UserError, match=r"a\.png exists and resnet did not write it.*--force") as e:
        write_output(tmp_path / "a.png", b"new")
    assert "\n" not in str(e.value)
    assert (tmp_path / "a.png").read_bytes() == FOREIGN
    write_output(tmp_path / "a.png", b"new", force=True)
    assert (tmp_path / "a.png").read_bytes() == b"new"


def test_an_output_changed_since_it_was_written_is_the_users(tmp_path: Path):
    write_output(tmp_path / "a.txt", "ours")
    (tmp_path / "a.txt").write_text("edited by hand")
    with pytest.raises(UserError, match="--force"):
        write_output(tmp_path / "a.txt", "again")
    assert (tmp_path / "a.txt").read_text() == "edited by hand"


def test_a_link_is_never_written_through(tmp_path: Path):
    target = tmp_path / "target.txt"
    target.write_bytes(FOREIGN)
    (tmp_path / "out.png").symlink_to(target)
    for append in (False, True):
        with pytest.raises(UserError, match="symbolic link"):
            write_output(tmp_path / "out.png", b"x", append=append)
    with pytest.raises(UserError, match="symbolic link"):  # a run directory's own name: not even with --force
        write_output(tmp_path / "out.png", b"x", owned=True, force=True)
    with replacing():  # --force replaces the link itself
        write_output(tmp_path / "out.png", b"x")
    assert target.read_bytes() == FOREIGN
    assert not (tmp_path / "out.png").is_symlink() and (tmp_path / "out.png").read_bytes() == b"x"


def test_fifos_and_folders_are_refused_even_with_force(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    for name in ("pipe", "dir"):
        for append in (False, True):
            with pytest.raises(UserError, match="not a file resnet wrote|not a regular file"):
                write_output(tmp_path / name, b"x", force=True, owned=True, append=append)


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path: Path):
    write_output(tmp_path / "report.md", "previous")

    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match=r"no space left.*previous report\.md is kept") as e:
        write_output(tmp_path / "report.md", full)
    assert "\n" not in str(e.value)
    assert (tmp_path / "report.md").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "report.md"]  # no temporary file left


def test_appends_close_a_torn_line_and_stay_in_their_file(tmp_path: Path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"iteration": 1}\n{"itera')
    write_output(log, '{"iteration": 2}\n', owned=True, append=True)
    assert log.read_text().splitlines() == ['{"iteration": 1}', '{"itera', '{"iteration": 2}']


def test_an_optional_cache_gives_way_on_any_write_failure(tmp_path: Path, monkeypatch):
    (tmp_path / "planted").symlink_to(tmp_path / "elsewhere")
    assert write_cache(tmp_path / "planted", b"x") is False
    assert not (tmp_path / "elsewhere").exists()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert write_cache(tmp_path / "c.json", b"{}") is False  # the writer's UserError does not escape
    assert write_cache(tmp_path / "d.json", b"{}") is False


def test_save_pretrained_refuses_a_folder_it_did_not_write(trained_run: Path, tmp_path: Path):
    pytest.importorskip("safetensors")
    from resnet import load
    from resnet.interop.library import save_pretrained

    model = load(trained_run)
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "config.json").write_bytes(FOREIGN)
    with pytest.raises(UserError, match="config.json, which resnet did not write"):
        save_pretrained(model, folder)
    assert (folder / "config.json").read_bytes() == FOREIGN and not (folder / "model.safetensors").exists()
    save_pretrained(model, tmp_path / "ours")
    save_pretrained(model, tmp_path / "ours")  # its own files again: fine
    (tmp_path / "ours" / "README.md").write_text("mine")
    save_pretrained(model, tmp_path / "ours")  # a model card the user wrote is kept, never replaced
    assert (tmp_path / "ours" / "README.md").read_text() == "mine"
    (tmp_path / "ours" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt, which resnet did not write"):
        save_pretrained(model, tmp_path / "ours")


# --- every subcommand that writes a file ----------------------------------------------------------------------


#: Every subcommand flag that names an output, and the cases below that point it at a foreign file and a link.
OUTPUT_FLAGS = {("eval", "--confusion"), ("convert", "--to"), ("export", "--out"), ("plot", "--out"),
                ("train", "--out"), ("reproduce", "--out"), ("demo", "--out")}  # fmt: skip
#: Output flags whose commands need more than a run to test (the foreign file, the link and --force are
#: tested where that is at hand), and where.
NOT_FILES = {("data download", "--to"): "a download needs a server: tests/test_download.py (..._without_force)"}


def test_every_output_flag_of_the_cli_is_covered():
    import argparse

    from resnet.cli import build_parser

    found = set()

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child, sub in action.choices.items():
                    walk(sub, f"{name} {child}".strip())
            found.update((name, f) for f in action.option_strings if f in ("--out", "--to", "--confusion"))

    walk(build_parser(), "")
    assert found == OUTPUT_FLAGS | set(NOT_FILES)


def writers(run: Path, work: Path) -> list[tuple[str, list, list[Path], bool]]:
    """(name, command line, the outputs it writes, whether they are a run directory's own) for every
    writing subcommand; a run's own views (``eval``/``plot`` defaults) are replaced in place, so only a link
    planted there is tested."""
    cases = [
        ("eval --confusion", ["eval", run, "--confusion", work / "c.png"], [work / "c.png", work / "c.csv"], False),
        ("eval default", ["eval", run, "--confusion"], [run / "confusion-test.png", run / "confusion-test.csv"], True),
        ("convert .pt", ["convert", run, "--to", work / "w.pt"], [work / "w.pt"], False),
        ("plot --out", ["plot", run, "--out", work / "p.png"], [work / "p.png"], False),
        ("plot default", ["plot", run], [run / "curves.png"], True),
        ("export default", ["export", "--checkpoint", run / "checkpoint.pt", "--format", "torchscript"],
         [run / "checkpoint.torchscript.pt"], False),
        ("reproduce table1", ["reproduce", "table1", "--out", work / "t1"],
         [work / "t1" / "table1" / "REPORT.md"], False),
        ("train", ["train", run, "--set", "schedule.iterations=16"], [run / "train.log", run / "metrics.jsonl"], True),
    ]  # fmt: skip
    try:
        import safetensors  # noqa: F401

        cases.append(
            ("convert .safetensors", ["convert", run, "--to", work / "w.safetensors"], [work / "w.safetensors"], False)
        )
    except ImportError:
        pass
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        cases.append(
            ("export --out", ["export", "--checkpoint", run, "--out", work / "m.onnx"], [work / "m.onnx"], False)
        )
    except ImportError:
        pass
    return cases


def test_no_subcommand_replaces_a_foreign_file_or_writes_through_a_link(trained_run: Path, tmp_path: Path, capsys):
    from resnet.cli import main

    run, work = tmp_path / "run", tmp_path / "work"
    shutil.copytree(trained_run, run)
    (work / "t1" / "table1").mkdir(parents=True)
    victim = tmp_path / "victim"
    for name, args, outputs, owned in writers(run, work):
        for planted in ("link",) if owned else ("foreign", "link"):
            victim.write_bytes(FOREIGN)
            for out in outputs:
                out.unlink(missing_ok=True)
                if planted == "foreign":
                    out.write_bytes(FOREIGN)
                else:
                    out.symlink_to(victim)
            capsys.readouterr()
            status = main([str(a) for a in args])
            err = capsys.readouterr().err
            assert status == 2, f"{name} / {planted}: {err}"
            assert err.startswith("resnet: error: ") and err.count("\n") == 1, f"{name} / {planted}: {err}"
            assert victim.read_bytes() == FOREIGN, f"{name} wrote through a planted link"
            for out in outputs:
                assert out.is_symlink() == (planted == "link"), name
                assert out.read_bytes() == FOREIGN, f"{name} replaced {out.name}"
            for out in outputs:
                out.unlink()
    # the run directory's own views are replaced in place (no --force), as is an output resnet wrote
    shutil.copytree(trained_run, tmp_path / "run2")
    assert main(["plot", str(tmp_path / "run2")]) == 0 and main(["plot", str(tmp_path / "run2")]) == 0
    assert main(["plot", str(tmp_path / "run2"), "--out", str(work / "p.png")]) == 0
    assert main(["plot", str(tmp_path / "run2"), "--out", str(work / "p.png")]) == 0


def test_force_replaces_the_file_and_a_link_itself_never_its_target(trained_run: Path, tmp_path: Path):
    from resnet.cli import main

    victim = tmp_path / "victim"
    victim.write_bytes(FOREIGN)
    (tmp_path / "p.png").symlink_to(victim)
    (tmp_path / "w.pt").write_bytes(FOREIGN)
    assert main(["plot", str(trained_run), "--out", str(tmp_path / "p.png"), "--force"]) == 0
    assert main(["convert", str(trained_run), "--to", str(tmp_path / "w.pt"), "--force"]) == 0
    assert victim.read_bytes() == FOREIGN
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG") and not (tmp_path / "p.png").is_symlink()
    assert (tmp_path / "w.pt").read_bytes() != FOREIGN
    # a second export/convert over its own earlier output needs nothing
    assert main(["convert", str(trained_run), "--to", str(tmp_path / "w.pt")]) == 0


@pytest.mark.parametrize("name", [".lock", "train.log", "invocations.jsonl", "metrics.jsonl", "run.json",
                                  "config.yaml", "checkpoint.pt", "summary.json"])  # fmt: skip
def test_training_never_writes_through_a_link_planted_in_its_run_directory(trained_run: Path, tmp_path: Path, name):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    victim = tmp_path / "victim"
    victim.write_bytes(FOREIGN)
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(victim)
    from resnet.cli import main

    assert main(["train", str(run), "--set", "schedule.iterations=16"]) == 2
    assert victim.read_bytes() == FOREIGN
    assert (run / name).is_symlink()

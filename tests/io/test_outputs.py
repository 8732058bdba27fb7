"""The output rule (``bertforge.io.outputs``) and the atomic writers that obey it: what may be replaced, what is
refused, and that a refused path is left exactly as it was (a FIFO still a FIFO, a link still a link)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bertforge.errors import PathError
from bertforge.io.atomic import atomic_dir, atomic_path, atomic_write_text
from bertforge.io.outputs import check_output


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _char_device(path: Path) -> Path:
    """A private character device (the null device's numbers) in the test's own directory; skip where mknod
    is not permitted. Never the system's /dev nodes."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    return path


def test_a_new_path_and_a_regular_file_are_allowed(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    assert check_output(tmp_path / "new.txt") == tmp_path / "new.txt"
    assert check_output(tmp_path / "old.txt") == tmp_path / "old.txt"
    assert check_output(tmp_path / "a" / "b", directory=True) == tmp_path / "a" / "b"
    atomic_write_text(tmp_path / "old.txt", "new")
    assert (tmp_path / "old.txt").read_text() == "new"


@pytest.mark.parametrize("make", [_fifo, _char_device], ids=["fifo", "char-device"])
def test_a_special_file_is_refused_and_stays_special(tmp_path, make):
    node = make(tmp_path / "node")
    kind = stat.S_IFMT(os.lstat(node).st_mode)
    with pytest.raises(PathError, match=r"--output .*node: is a (FIFO|character device)"):
        check_output(node, flag="--output")
    with pytest.raises(PathError, match="is a (FIFO|character device)"):  # the library's writers refuse it too
        atomic_write_text(node, "data")
    with pytest.raises(PathError, match="is a (FIFO|character device)"):
        with atomic_dir(node):
            pass
    assert stat.S_IFMT(os.lstat(node).st_mode) == kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]  # no temporary left beside it


def test_the_symlink_rule_is_refuse_and_the_link_and_target_stay(tmp_path):
    """The rule: an output whose last part is a symbolic link is refused (its target is named), for files and
    directories, in the CLI check and in the writers; the link and its target are untouched."""
    target = tmp_path / "target.txt"
    target.write_text("precious")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(PathError, match=rf"symbolic link.*pass its target \({target}\)"):
        check_output(link, flag="--output")
    with pytest.raises(PathError, match="symbolic link"):
        atomic_write_text(link, "overwritten")
    target_dir, dir_link = tmp_path / "dir", tmp_path / "dir-link"
    target_dir.mkdir()
    (target_dir / "keep").write_text("keep")
    dir_link.symlink_to(target_dir)
    with pytest.raises(PathError, match="symbolic link"):
        check_output(dir_link, directory=True, flag="--out")
    with pytest.raises(PathError, match="symbolic link"):
        with atomic_dir(dir_link) as tmp:
            (tmp / "x").write_text("x")
    assert link.is_symlink() and target.read_text() == "precious"
    assert dir_link.is_symlink() and [p.name for p in target_dir.iterdir()] == ["keep"]


def test_an_output_that_is_an_input_is_refused_by_inode(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("input")
    hard = tmp_path / "hard.txt"
    os.link(data, hard)
    with pytest.raises(PathError, match=r"is the input .*data\.txt \(the same file\)"):
        check_output(data, flag="--output", inputs=[data])
    with pytest.raises(PathError, match="by a hard link"):
        check_output(hard, flag="--output", inputs=[data])
    via_dots = tmp_path / "sub" / ".." / "data.txt"
    (tmp_path / "sub").mkdir()
    with pytest.raises(PathError, match="the same file"):
        check_output(via_dots, inputs=[data])
    assert check_output(tmp_path / "other.txt", inputs=[data, None, tmp_path / "missing"])


def test_an_output_inside_an_input_directory_or_holding_an_input_is_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(PathError, match="lies inside the input directory"):
        check_output(model / "predictions.jsonl", flag="--output", inputs=[model])
    with pytest.raises(PathError, match="lies inside the input directory"):
        check_output(model / "run", directory=True, flag="--out", inputs=[model])
    with pytest.raises(PathError, match=r"is the input .*model \(the same directory\)"):
        check_output(model, directory=True, flag="--out", inputs=[model])
    with pytest.raises(PathError, match=r"contains the input .*config\.json"):
        check_output(tmp_path, directory=True, flag="--out", inputs=[model / "config.json"])
    assert check_output(tmp_path / "elsewhere", directory=True, inputs=[model])


def test_a_directory_holding_a_fifo_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fifo = _fifo(out / "pipe")
    with pytest.raises(PathError, match="holds .*pipe, a FIFO"):
        with atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_unwritable_place_is_named_as_the_user_gave_it(tmp_path):
    """Never the internal temporary's name (``.name-XXXX``)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a directory is expected")
    wanted = blocker / "run" / "vectors.jsonl"
    with pytest.raises(PathError) as e:
        atomic_write_text(wanted, "x")
    assert str(e.value).startswith(f"{wanted}: cannot be written") and ".tmp" not in str(e.value)
    with pytest.raises(PathError, match=rf"cannot be created: {blocker} is not a directory"):
        check_output(blocker / "run", directory=True, flag="--out")
    if Path("/sys/kernel").is_dir():  # a file system nobody may create files in, root included
        with pytest.raises(PathError) as e:
            with atomic_dir("/sys/bertforge-test-out"):
                pass
        assert str(e.value).startswith("/sys/bertforge-test-out: cannot be written")
        assert ".bertforge-test-out-" not in str(e.value)


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("failed mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]

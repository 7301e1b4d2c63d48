"""`sopcorr match`: writes the figure; clear one-line errors and exit status 1 otherwise."""
import numpy as np
import pytest
from PIL import Image

from sopcorr.cli import main, position_colours
from test_matchers_siamese import make_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 255, (60, 40, 3), dtype=np.uint8)).save(d / "b.jpg")
    make_checkpoint(d / "m.pt", dx=3.0)
    return d


def test_position_colours_injective_on_box():
    xy = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1)
    rgb, inside = position_colours(xy, (0, 0, 4, 3))
    assert inside.all()
    assert len({tuple(np.round(c, 6)) for c in rgb.reshape(-1, 3)}) == 20
    _, inside = position_colours(np.array([[5.0, 1.0]]), (0, 0, 4, 3))
    assert not inside[0]


def test_match_writes_png(files, capsys):
    out = files / "out" / "match.png"
    rc = main(["match", str(files / "a.png"), str(files / "b.jpg"), "--checkpoint", str(files / "m.pt"),
               "-o", str(out), "--lines", "5", "--device", "cpu", "--box-a", "5", "5", "50", "40"])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("case,needle", [
    ("missing_image", "nope.png: image file not found"),
    ("missing_ckpt", "missing.pt: checkpoint not found"),
    ("bad_ckpt", "bad.pt: not a readable torch checkpoint"),
    ("other_backbone", "not 'vgg16'"),
    ("bad_box", "--box-a"),
])
def test_match_errors(files, tmp_path, capsys, case, needle):
    a, b, ck = str(files / "a.png"), str(files / "b.jpg"), str(files / "m.pt")
    extra = []
    if case == "missing_image":
        a = str(tmp_path / "nope.png")
    elif case == "missing_ckpt":
        ck = str(tmp_path / "missing.pt")
    elif case == "bad_ckpt":
        (tmp_path / "bad.pt").write_text("garbage")
        ck = str(tmp_path / "bad.pt")
    elif case == "other_backbone":
        extra = ["--backbone", "vgg16"]
    elif case == "bad_box":
        extra = ["--box-a", "10", "10", "5", "20"]
    out = tmp_path / "o.png"
    rc = main(["match", a, b, "--checkpoint", ck, "-o", str(out), "--device", "cpu", *extra])
    err = capsys.readouterr().err
    assert rc == 1
    assert needle in err and err.startswith("sopcorr error:") and err.count("\n") == 1
    assert not out.exists()


def test_console_script_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["match", "a.png"])
    assert exc.value.code != 0


def test_subprocess_exit_status(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sopcorr.cli", "match", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                        "--checkpoint", str(tmp_path / "m.pt"), "-o", str(tmp_path / "o.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().endswith("a.png: image file not found") and r.stderr.count("\n") == 1

"""`digitlab predict`: a trained run classifies a person's own digit files. Tested as a real user's images would
be: MNIST test digits written out as PNG, inverted, enlarged to 200x200 with a margin and saved as JPEG are
classified as the run classifies the originals. Bad input is one line and exit code 2."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli
from PIL import Image, ImageOps

from digitlab.data.photo import read_grey, to_digit
from digitlab.run.folder import RunFolder
from digitlab.run.view import RunView

# Ten digits, a small MLP trained on shifted images (so that half a pixel of centring does not decide), ~5 s.
SMALL = {"name": "small10", "seed": 0, "data": {"digits": list(range(10)), "validation": 0.1, "limit": 6000,
                                                 "augment": {"shift": 2}},
         "model": [{"linear": 128}, "relu", {"linear": 10}], "loss": "cross_entropy",
         "optimizer": {"name": "adam", "lr": 0.002}, "epochs": 4, "batch_size": 64}
DIGITS = 300


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    (root / "small10.yaml").write_text(yaml.safe_dump(SMALL))
    result = cli("train", root / "small10.yaml", "--runs-dir", root / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def user_images(run, tmp_path_factory):
    """The first DIGITS test digits as a user would photograph them, and how the run classifies the originals."""
    folder = tmp_path_factory.mktemp("digits")
    view = RunView(RunFolder.open(run))
    test = view.data.test
    paths = []
    for i in range(DIGITS):
        png = folder / f"digit-{i}.png"
        Image.fromarray(np.uint8(np.round(test.x[i, 0] * 255)), mode="L").save(png)  # white ink on black
        dark_on_light = ImageOps.invert(Image.open(png))
        page = Image.new("L", (200, 200), 255)
        page.paste(dark_on_light.resize((150, 150), Image.Resampling.BICUBIC), (25, 25))
        jpeg = folder / f"digit-{i}.jpg"
        page.convert("RGB").save(jpeg, quality=80)
        paths.append(jpeg)
    return paths, view.test["predictions"][:DIGITS], view.test["probabilities"][:DIGITS], view.classes, folder


def test_test_digits_as_a_user_would_save_them_are_classified_as_the_originals(run, user_images):
    paths, originals, probabilities, classes, _ = user_images
    result = cli("predict", run, *paths, "--format", "json")
    assert result.exit_code == 0, result.stderr
    said = np.array([classes.index(p["predicted"]) for p in json.loads(result.stdout)])
    agree = said == originals
    assert agree.mean() >= 0.95, f"{agree.mean():.3f} of {DIGITS} agree"
    sure = probabilities.max(axis=1) >= 0.75  # a near tie may go either way under any resampling
    assert sure.sum() > 0.8 * DIGITS and agree[sure].all(), np.flatnonzero(sure & ~agree)


def test_text_output_is_the_top_three_per_image(run, user_images):
    paths, originals, _, classes, _ = user_images
    result = cli("predict", run, paths[0], paths[1])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, path, expected in zip(lines, paths, originals):
        fields = line.split()
        assert fields[0] == str(path) and len(fields) == 7
        assert fields[1] == str(classes[expected])
        percents = [float(f.rstrip("%")) for f in fields[2::2]]
        assert percents == sorted(percents, reverse=True) and 0 <= sum(percents) <= 100.1


def test_json_lists_every_probability(run, user_images):
    paths = user_images[0][:3]
    result = cli("predict", run, *paths, "--format", "json")
    items = json.loads(result.stdout)
    assert [item["image"] for item in items] == [str(p) for p in paths]
    for item in items:
        assert set(item) == {"image", "predicted", "probabilities", "classes"}
        assert item["classes"] == list(range(10))
        assert list(item["probabilities"]) == [str(d) for d in range(10)]
        assert sum(item["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert item["predicted"] == int(max(item["probabilities"], key=item["probabilities"].get))


def test_explain_draws_what_the_model_saw(run, user_images, tmp_path):
    out = tmp_path / "explain.png"
    result = cli("predict", run, *user_images[0][:2], "--explain", out)
    assert result.exit_code == 0 and f"explained: {out}" in result.stderr
    image = Image.open(out)
    assert image.format == "PNG" and image.size[1] > 300


def test_colour_light_ink_on_dark_and_transparent_backgrounds_read_alike(run, user_images, tmp_path):
    paths, originals, _, classes, folder = user_images
    i = int(np.flatnonzero(originals == originals[0])[0])
    grey = Image.open(folder / f"digit-{i}.png").resize((120, 90), Image.Resampling.BICUBIC)  # wider than tall
    chalk = Image.merge("RGB", (grey, grey.point(lambda v: v * 0.8), Image.new("L", grey.size, 40)))
    chalk.save(tmp_path / "chalk.png")  # light blue-ish ink on a dark board, not square
    ink = ImageOps.invert(grey)
    Image.merge("RGBA", (ink, ink, ink, grey)).save(tmp_path / "transparent.png")  # dark strokes, clear paper
    result = cli("predict", run, tmp_path / "chalk.png", tmp_path / "transparent.png", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [p["predicted"] for p in json.loads(result.stdout)] == [classes[originals[i]]] * 2


def test_an_mnist_digit_made_again_keeps_its_box_and_centre():
    x = np.zeros((40, 30), dtype=np.float32)
    x[5:35, 10:22] = 1.0  # a bar, off centre, on black
    digit = to_digit(x, (1, 28, 28))[0]
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    assert rows[-1] - rows[0] + 1 in (20, 21) and 8 <= cols[-1] - cols[0] + 1 <= 10  # longer side 20, aspect kept
    total = digit.sum()
    assert (digit.sum(axis=1) @ np.arange(28)) / total == pytest.approx(14, abs=0.05)
    assert (digit.sum(axis=0) @ np.arange(28)) / total == pytest.approx(14, abs=0.05)
    small = to_digit(1 - x, (1, 8, 8))[0]  # dark on light, for an 8x8 dataset: the box fills the image
    rows = np.flatnonzero(small.any(axis=1))
    assert rows[0] == 0 and rows[-1] == 7 and small.max() <= 1


def huge_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A PNG whose header says 30000x30000 pixels (its data does not follow: nothing may try to decode it)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "notes.png").write_text("these are not pixels")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.new("L", (64, 64), 250).save(tmp_path / "blank.png")
    Image.new("RGB", (300, 300), (200, 30, 30)).save(tmp_path / "full.jpg", quality=90)
    whole = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) // 3])
    return {"not an image": (tmp_path / "notes.png", "not an image that can be read"),
            "empty": (tmp_path / "empty.jpg", "empty file, not an image"),
            "blank": (tmp_path / "blank.png", "no digit found: the image is blank"),
            "huge": (huge_png(tmp_path / "huge.png"), "900 megapixels; the largest image digitlab reads is 64"),
            "large": (huge_png(tmp_path / "large.png", 9000, 8000), "9000x8000 pixels (72 megapixels)"),
            "truncated": (tmp_path / "cut.jpg", "damaged or truncated image"),
            "missing": (tmp_path / "nowhere.png", "no such image file"),
            "a folder": (tmp_path, "is a folder, expected an image file")}


@pytest.mark.parametrize("case", ["not an image", "empty", "blank", "huge", "large", "truncated", "missing",
                                  "a folder"])
def test_bad_images_are_one_line_and_exit_2(run, user_images, tmp_path, case):
    path, message = bad_inputs(tmp_path)[case]
    result = cli("predict", run, user_images[0][0], path)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path}: ") and message in result.stderr


def test_a_run_without_a_usable_model_is_refused_with_one_line(run, user_images, tmp_path):
    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    (stopped / "model.npz").unlink()
    RunFolder(stopped).update_status(status="interrupted")
    result = cli("predict", stopped, user_images[0][0])
    assert result.exit_code == 2 and result.stderr == (
        f"error: {stopped / 'model.npz'}: not found (the run is interrupted); predict needs a run that completed\n")
    shutil.copyfile(run / "splits.npz", stopped / "model.npz")
    result = cli("predict", stopped, user_images[0][0])
    assert result.exit_code == 2 and "model.npz: damaged" in result.stderr and result.stderr.count("\n") == 1
    result = cli("predict", tmp_path / "no-run", user_images[0][0])
    assert result.exit_code == 2 and "no such folder" in result.stderr


def test_read_grey_turns_sixteen_bit_and_palette_images_into_grey(tmp_path):
    deep = np.zeros((20, 20), dtype=np.uint16)
    deep[5:15, 8:12] = 60000
    Image.fromarray(deep).save(tmp_path / "deep.png")
    grey = read_grey(tmp_path / "deep.png")
    assert grey.shape == (20, 20) and grey.max() == 1 and grey.min() == 0
    Image.fromarray(np.uint8(deep // 256)).convert("P").save(tmp_path / "palette.png")
    assert read_grey(tmp_path / "palette.png")[10, 10] > 0.9


def test_an_8x8_run_reads_a_users_image_as_its_digits_were_made(tmp_path):
    """The 8x8 digits' recipe (a 32x32 bitmap counted in 4x4 blocks): their test digits, enlarged to 160x160
    and saved as JPEG, mostly keep the run's class. One pixel is an eighth of such an image, so a shift of one
    moves more than on MNIST: at least 90% (95% when this was written), not every one."""
    config = tmp_path / "digits8x8-mlp.yaml"
    shutil.copyfile(Path(__file__).resolve().parents[1] / "configs" / "seeds" / "digits8x8-mlp.yaml", config)
    result = cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet", "--set", "epochs=40")
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    view = RunView(RunFolder.open(run))
    paths = []
    for i in range(200):
        digit = Image.fromarray(np.uint8(np.round(255 - view.data.test.x[i, 0] * 255)), mode="L")
        page = Image.new("L", (200, 200), 255)
        page.paste(digit.resize((160, 160), Image.Resampling.BICUBIC), (20, 20))
        paths.append(tmp_path / f"d{i}.jpg")
        page.save(paths[-1], quality=85)
    result = cli("predict", run, *paths, "--format", "json")
    assert result.exit_code == 0, result.stderr
    said = [p["predicted"] for p in json.loads(result.stdout)]
    originals = [view.classes[c] for c in view.test["predictions"][:200]]
    assert np.mean(np.array(said) == np.array(originals)) >= 0.9


def test_a_folder_in_place_of_the_model_is_named_so(run, user_images, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "model.npz").unlink()
    (copy / "model.npz").mkdir()
    result = cli("predict", copy, user_images[0][0])
    assert result.exit_code == 2 and f"{copy / 'model.npz'}: damaged (is a folder, not a file)" in result.output


# -- a network that knows only some digits ---------------------------------------------------------------------------
def test_a_two_class_network_says_which_digits_it_knows(run, user_images, tmp_path):
    """A 3-vs-8 network answers a drawn 5 with a 3 or an 8: the text's first line and the JSON say so."""
    config = tmp_path / "s38.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "name": "s38", "data": {"digits": [3, 8], "limit": 1000},
                                      "model": [{"linear": 16}, "relu", {"linear": 2}], "epochs": 1}))
    result = cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    two = Path(result.stdout.strip().splitlines()[-1])
    paths = user_images[0][:2]
    result = cli("predict", two, *paths)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "this network knows only 3 and 8" and len(lines) == 3
    assert all(line.split()[1] in ("3", "8") for line in lines[1:])
    items = json.loads(cli("predict", two, *paths, "--format", "json").stdout)
    assert [item["classes"] for item in items] == [[3, 8], [3, 8]]
    assert "knows only" not in cli("predict", run, *paths).stdout  # all ten digits: nothing to say


# -- uneven lighting -------------------------------------------------------------------------------------------------
LIT = 100  # test digits drawn under each uneven lighting


def lighting(kind: str, size: int = 200) -> np.ndarray:
    """How brightly each pixel of a page is lit (1 full light): a diagonal gradient down to 35%, or a shadow over
    the right 30% (half the light, a soft edge), or shadows over the bottom and right 20% (a darker corner)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    if kind == "gradient":
        return 1 - 0.65 * (0.7 * x + 0.3 * y)
    if kind == "shadow":
        return 1 - 0.5 / (1 + np.exp(-(x - 0.7) * size / 4))
    right, bottom = (1 - 0.6 / (1 + np.exp(-(t - 0.8) * size / 2)) for t in (x, y))
    return right * bottom


def lit_page(digit: np.ndarray, light: np.ndarray) -> Image.Image:
    """An MNIST digit (white on black) as dark ink on a page under `light`: the digit enlarged to 150x150 in the
    middle, and what the camera sees is the light times the page's reflectance (ink reflects 15%)."""
    size = light.shape[0]
    ink = np.zeros((size, size))
    big = Image.fromarray(np.uint8(np.round(digit * 255)), mode="L").resize((150, 150), Image.Resampling.BICUBIC)
    top = (size - 150) // 2
    ink[top:top + 150, top:top + 150] = np.asarray(big, dtype=np.float64) / 255
    return Image.fromarray(np.uint8(np.round(255 * light * (1 - 0.85 * ink))), mode="L")


@pytest.mark.parametrize("kind", ["gradient", "shadow", "corner"])
def test_digits_under_uneven_light_read_as_the_originals(run, tmp_path, kind):
    """Without evening out, the dark side of the page is read as ink and the digit is lost in it (about one in
    ten agreed, by chance); evened out, the run's answers for the clean digits come back."""
    view = RunView(RunFolder.open(run))
    light = lighting(kind)
    paths = []
    for i in range(LIT):
        paths.append(tmp_path / f"lit-{i}.png")
        lit_page(view.data.test.x[i, 0], light).save(paths[-1])
    result = cli("predict", run, *paths, "--format", "json")
    assert result.exit_code == 0, result.stderr
    said = np.array([view.classes.index(p["predicted"]) for p in json.loads(result.stdout)])
    agree = said == view.test["predictions"][:LIT]
    assert agree.mean() >= 0.9, f"{agree.mean():.2f} of {LIT} agree under {kind}"
    assert "warning" not in result.stderr  # the digits keep clear of the edges: nothing is left there


@pytest.mark.parametrize("kind", ["gradient", "shadow", "corner"])
def test_a_blank_page_under_uneven_light_is_refused_as_blank(run, tmp_path, kind):
    blank = tmp_path / f"blank-{kind}.jpg"
    Image.fromarray(np.uint8(np.round(255 * lighting(kind)))).convert("RGB").save(blank, quality=80)
    result = cli("predict", run, blank)
    assert result.exit_code == 2 and result.stdout == "" and result.stderr == (
        f"error: {blank}: no digit found: the image is blank (or its ink is too faint) once its uneven background "
        f"is evened out\n")


def test_a_shadow_evening_out_cannot_remove_is_warned_about(run, user_images, tmp_path):
    """A finger's shadow coming in from the bottom edge is as narrow as a stroke: it stays in what the model
    sees, so the answer comes with a warning line naming the image."""
    view = RunView(RunFolder.open(run))
    y, x = np.mgrid[0:200, 0:200]
    finger = 1 - 0.5 / (1 + np.exp(-(25 - np.hypot(x - 60, np.maximum(0, 150 - y) / 3)) / 3))
    path = tmp_path / "finger.png"
    lit_page(view.data.test.x[0, 0], finger).save(path)
    result = cli("predict", run, path)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1
    assert result.stderr.startswith(f"warning: {path}: uneven lighting evened out, but ink still touches ")
    assert result.stderr.count("\n") == 1

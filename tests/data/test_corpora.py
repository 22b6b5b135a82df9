"""Prior corpora: near-duplicate screening against test stimuli, the built-ins, user files and the digest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from skimage.transform import resize
from sklearn.datasets import load_digits

from fmri_data.catalog import CATALOG
from fmri_data.corpora import (
    BUILT_IN_CORPORA,
    LEAK_THRESHOLD,
    MAX_LEAK_FRACTION,
    CorpusScreening,
    PriorCorpus,
    builtin,
    detect_patch_grid,
    load_corpus,
    screen_corpus,
)
from fmri_data.corpora.builtin import _bitmap, _diagonal, _rectangle, render_bilinear
from fmri_data.corpora.resize import resize_images
from fmri_data.errors import DataError
from fmri_data.io import load_dataset
from fmri_data.simulator.stimuli import area_overlap

SIZE = 28


def noise(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size), dtype=np.float32)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The image moved down dy and right dx pixels, zeros where nothing moved in."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def patterns_rendered(n: int, grid: int, seed: int) -> np.ndarray:
    """Random binary grid x grid patterns rendered at SIZE by scikit-image, the reference for the design."""
    patterns = np.random.default_rng(seed).random((n, grid, grid)) < 0.5
    return np.stack([resize(p.astype(float), (SIZE, SIZE), order=1) for p in patterns]).astype(np.float32)


def corpus_with(n_unrelated: int, copies: list[np.ndarray]) -> PriorCorpus:
    return PriorCorpus("mixed", np.concatenate([noise(n_unrelated, seed=7), np.stack(copies)]))


# screening


def test_screen_catches_exact_copies_and_one_pixel_shifts_and_keeps_unrelated_images() -> None:
    test = noise(20, seed=1)
    corpus = np.concatenate(
        [noise(50, seed=2), test[[3]], shifted(test[5], 1, -1)[None], shifted(test[8], 0, 1)[None]]
    )
    mask = screen_corpus(corpus, test)
    assert mask.dtype == bool
    assert mask.shape == (53,)
    np.testing.assert_array_equal(np.flatnonzero(mask), [50, 51, 52])


def test_a_three_pixel_shift_escapes_max_shift_one_but_not_max_shift_three() -> None:
    # Noise decorrelates after one pixel, so only the matching shift finds this copy: max_shift bounds it.
    test = noise(5, seed=1)
    corpus = shifted(test[2], 3, 0)[None]
    assert not screen_corpus(corpus, test, max_shift=1).any()
    assert screen_corpus(corpus, test, max_shift=3).all()


def test_screen_threshold_and_blocks() -> None:
    test = noise(4, seed=1)
    # Correlation with test[0] is 0.8 / sqrt(0.8**2 + 0.6**2) = 0.8 for independent noise of equal variance.
    blend = 0.8 * test[0] + 0.6 * noise(1, seed=9)[0]
    corpus = np.concatenate([noise(9, seed=3), blend[None], test[[1]]])
    np.testing.assert_array_equal(np.flatnonzero(screen_corpus(corpus, test)), [10])
    np.testing.assert_array_equal(np.flatnonzero(screen_corpus(corpus, test, threshold=0.7)), [9, 10])
    np.testing.assert_array_equal(screen_corpus(corpus, test, block=2), screen_corpus(corpus, test))


def test_constant_images_duplicate_only_an_identical_image() -> None:
    test = np.concatenate([noise(3, seed=1), np.zeros((1, SIZE, SIZE), np.float32)])
    corpus = np.stack([np.zeros((SIZE, SIZE)), np.full((SIZE, SIZE), 0.5), noise(1, seed=2)[0]])
    np.testing.assert_array_equal(screen_corpus(corpus, test), [True, False, False])
    assert not screen_corpus(corpus, test[:3]).any()


def test_screen_refuses_images_of_another_size() -> None:
    with pytest.raises(DataError, match="evaluation size"):
        screen_corpus(noise(3, seed=1, size=32), noise(3, seed=2))


def test_screened_drops_and_counts_duplicates() -> None:
    test = noise(10, seed=1)
    corpus = corpus_with(300, [test[0], shifted(test[1], -1, 0)])
    clean = corpus.screened(test)
    assert len(clean.images) == 300
    assert not screen_corpus(clean.images, test).any()
    assert clean.screening == CorpusScreening(
        n_images=302,
        n_dropped=2,
        n_test_stimuli=10,
        threshold=LEAK_THRESHOLD,
        max_shift=1,
        allowed_leaks=False,
        corpus="mixed",
    )
    assert corpus.screening is None
    assert clean.screening.describe() == (
        "prior corpus mixed: 302 images, 2 dropped as near-duplicates of the 10 test stimuli "
        "(pixel correlation >= 0.95 at the evaluation size, shifts up to 1 px)"
    )
    record = json.loads(json.dumps(clean.screening.as_dict()))
    assert record["n_dropped"] == 2
    assert record["leak_fraction"] == pytest.approx(2 / 302)


def test_screened_refuses_a_leaking_corpus_unless_allowed() -> None:
    test = noise(12, seed=1)
    corpus = corpus_with(100, list(test))
    assert MAX_LEAK_FRACTION < 12 / 112
    with pytest.raises(DataError, match=r"12 of its 112 images \(10\.7%\).*--allow-corpus-leaks"):
        corpus.screened(test)
    allowed = corpus.screened(test, allow_leaks=True)
    assert len(allowed.images) == 100
    assert allowed.screening.allowed_leaks
    assert allowed.screening.describe().endswith(
        "shifts up to 1 px) CORPUS LEAKS ALLOWED: 10.7% OF IT DUPLICATED TEST STIMULI"
    )


def test_screened_refuses_test_stimuli_of_another_size() -> None:
    with pytest.raises(DataError, match="28x28"):
        PriorCorpus("noise", noise(5, seed=1)).screened(noise(2, seed=2, size=20))


# built-in corpora


def test_builtins_are_listed() -> None:
    assert set(BUILT_IN_CORPORA) == {"simulator", "binary-patterns", "figures", "digits"}


def test_digits_load_all_1797_images_at_the_asked_size() -> None:
    digits = load_corpus("digits", SIZE, n=10)
    assert digits.name == "digits"
    assert digits.images.shape == (1797, SIZE, SIZE)
    assert digits.images.dtype == np.float32
    assert digits.images.min() == 0.0
    assert digits.images.max() == pytest.approx(1.0)
    inked_rows = digits.images.any(axis=2).sum(axis=1)
    inked_cols = digits.images.any(axis=1).sum(axis=1)
    assert inked_rows.max() <= 20  # MNIST's 20x20 box inside its 28x28 black frame
    assert inked_cols.max() <= 20
    assert load_corpus("digits", 16).images.shape == (1797, 16, 16)


def test_digits_are_drawn_like_mnist_sharp_ink_centred_by_mass() -> None:
    """Bitmaps, not upsampled 8x8 blobs: ink is near-binary (only anti-aliased edges are grey), the centre of
    mass sits where MNIST places it, and each is still the digit sklearn counted (it correlates
    with that digit's plain upsampling)."""
    images = load_corpus("digits", SIZE).images.astype(np.float64)
    ink = images[images > 0.05]
    assert np.mean((ink > 0.2) & (ink < 0.8)) < 0.35  # MNIST's 0.34; plain upsampling's 0.60
    rows, cols = np.indices((SIZE, SIZE))
    mass = images.sum(axis=(1, 2))
    centre_row = (images * rows).sum(axis=(1, 2)) / mass
    centre_col = (images * cols).sum(axis=(1, 2)) / mass
    assert np.abs(centre_row - 14).max() <= 0.5 + 1e-9  # MNIST places it at (14, 14), to the pixel
    assert np.abs(centre_col - 14).max() <= 0.5 + 1e-9
    counts = load_digits().images / 16.0
    blurred = np.pad(resize_images(counts, 20), ((0, 0), (4, 4), (4, 4)))  # plain, in a 20x20 box
    same = [
        np.corrcoef(image.ravel(), blur.ravel())[0, 1] for image, blur in zip(images, blurred, strict=True)
    ]
    assert np.median(same) > 0.75  # another digit's upsampling: 0.58


def test_digit_bitmaps_keep_the_ink_uci_counted_block_by_block() -> None:
    """The bitmap each digit is drawn from holds as much ink as UCI's 4x4 counts say, where they say it."""
    counts = load_digits().images[:200] / 16.0
    bitmaps = np.stack([_bitmap(count) for count in counts])
    assert set(np.unique(bitmaps)) == {0.0, 1.0}
    np.testing.assert_allclose(bitmaps.mean(axis=(1, 2)), counts.mean(axis=(1, 2)), atol=1 / 1024)
    blocks = bitmaps.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.corrcoef(blocks.ravel(), counts.ravel())[0, 1] > 0.95


def test_binary_patterns_render_as_scikit_image_resize_order_1() -> None:
    corpus = load_corpus("binary-patterns:10", SIZE, n=40, seed=3)
    assert corpus.images.shape == (40, SIZE, SIZE)
    down = area_overlap(10, SIZE)
    patterns = (down @ corpus.images.astype(np.float64) @ down.T) >= 0.5
    reference = np.stack([resize(p.astype(float), (SIZE, SIZE), order=1) for p in patterns])
    np.testing.assert_allclose(corpus.images, reference, atol=1e-6)
    fill = patterns.mean(axis=(1, 2))
    assert fill.min() > 0
    assert fill.max() - fill.min() > 0.3  # each pattern draws its own density
    np.testing.assert_array_equal(load_corpus("binary-patterns:10", SIZE, n=40, seed=3).images, corpus.images)


def test_binary_patterns_take_the_grid_from_the_stimuli() -> None:
    corpus = load_corpus("binary-patterns", SIZE, n=30, stimuli=patterns_rendered(20, 8, seed=1))
    assert detect_patch_grid(corpus.images) == 8
    assert detect_patch_grid(load_corpus("binary-patterns", SIZE, n=30).images) == 10


def test_figures_are_strokes_of_whole_patches_on_the_grid() -> None:
    corpus = load_corpus("figures:10", SIZE, n=200, seed=4)
    assert corpus.images.shape == (200, SIZE, SIZE)
    assert detect_patch_grid(corpus.images) == 10  # rendered from binary patches, as Miyawaki's stimuli
    down = area_overlap(10, SIZE)
    patterns = (down @ corpus.images.astype(np.float64) @ down.T) >= 0.5
    fill = patterns.mean(axis=(1, 2))
    assert fill.min() > 0
    assert np.median(fill) < 0.3  # figures, not the dense random patterns binary-patterns draws
    for pattern in patterns:  # every on patch touches another: strokes, not salt and pepper
        padded = np.pad(pattern, 1)
        neighbours = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        diagonal = padded[:-2, :-2] | padded[:-2, 2:] | padded[2:, :-2] | padded[2:, 2:]
        assert not (pattern & ~neighbours & ~diagonal).any()
    np.testing.assert_array_equal(load_corpus("figures:10", SIZE, n=200, seed=4).images, corpus.images)
    assert not np.array_equal(load_corpus("figures:10", SIZE, n=200, seed=5).images, corpus.images)
    assert (
        detect_patch_grid(load_corpus("figures", SIZE, n=30, stimuli=patterns_rendered(20, 8, 1)).images) == 8
    )


def test_thick_diagonals_and_outlines_are_the_shapes_they_name() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        thick = _diagonal(10, 2, rng)
        rows = [np.flatnonzero(row) for row in thick if row.any()]
        assert all(len(run) == 2 and run[1] == run[0] + 1 for run in rows)  # one run of 2 a row: no X
        steps = np.diff([run[0] for run in rows])
        assert set(np.abs(steps)) == {1}  # a 45-degree line
        assert len(set(steps)) == 1  # in one direction throughout
        outline = _rectangle(10, 2, rng)
        rows, cols = np.nonzero(outline)
        box = outline[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        for side in (box[:2], box[-2:], box[:, :2], box[:, -2:]):
            assert side.all()
        assert box[2:-2, 2:-2].size > 0
        assert not box[2:-2, 2:-2].any()


def test_a_figure_keeps_every_stroke_drawn_into_it(monkeypatch) -> None:
    """A rectangle's hole must not erase what earlier strokes drew there: figures are unions."""
    drawn: list[np.ndarray] = []

    def recording(stroke):
        def draw(grid, width, rng):
            drawn.append(stroke(grid, width, rng))
            return drawn[-1]

        return draw

    monkeypatch.setattr(builtin, "_STROKES", tuple(recording(stroke) for stroke in builtin._STROKES))
    for seed in range(40):
        drawn.clear()
        figure = builtin.figure_patterns(1, 10, 10, seed=seed)[0]  # at the grid's size: the patches
        np.testing.assert_array_equal(figure > 0.5, np.logical_or.reduce(drawn))


def test_few_figures_duplicate_miyawaki_like_letters() -> None:
    """Random strokes rarely draw a copy of a simple figure: far fewer than the screening's 1% are dropped."""
    letters = np.zeros((3, 10, 10))
    letters[0, 3:7, 3] = letters[0, 3:7, 6] = letters[0, 3, 3:7] = 1  # an n
    letters[1, 3:7, 3] = letters[1, 3:7, 6] = letters[1, 6, 3:7] = 1  # a u
    letters[2, 3:7, 3:7] = 1  # a filled square
    screened = load_corpus("figures", SIZE, n=3000, seed=0).screened(render_bilinear(letters, SIZE))
    assert screened.screening.n_dropped <= 3  # 0.1%, a tenth of what the screening refuses


def test_detect_patch_grid_finds_the_design_or_none() -> None:
    assert detect_patch_grid(patterns_rendered(30, 10, seed=1)) == 10
    assert detect_patch_grid(noise(30, seed=1)) is None


def test_simulator_corpus() -> None:
    corpus = load_corpus("simulator", SIZE, n=12, seed=1)
    assert corpus.images.shape == (12, SIZE, SIZE)
    assert 0 <= corpus.images.min() <= corpus.images.max() <= 1


def test_binary_patterns_reproduce_the_miyawaki_stimuli() -> None:
    folder = os.environ.get("FMRI_DATA_DIR")
    if not folder or not (Path(folder) / CATALOG["miyawaki"].filename).is_file():
        pytest.skip("FMRI_DATA_DIR does not hold the Miyawaki file; point it there to run this")
    stimuli = load_dataset("miyawaki").images
    assert detect_patch_grid(stimuli) == 10
    down = area_overlap(10, SIZE)
    patterns = (down @ stimuli.astype(np.float64) @ down.T) >= 0.5
    rendered = np.stack([resize(p.astype(float), (SIZE, SIZE), order=1) for p in patterns])
    np.testing.assert_allclose(rendered, stimuli, atol=1e-6)


# user files


def test_npz_round_trip_uint8_and_float_rgb(tmp_path: Path) -> None:
    gray = (np.random.default_rng(1).random((4, SIZE, SIZE)) * 255).astype(np.uint8)
    np.savez(tmp_path / "gray.npz", images=gray, labels=np.arange(4))
    loaded = load_corpus(str(tmp_path / "gray.npz"), SIZE)
    assert loaded.name == str(tmp_path / "gray.npz")
    np.testing.assert_allclose(loaded.images, gray / 255.0, atol=1e-6)

    rgb = np.random.default_rng(2).random((3, SIZE, SIZE, 3))
    np.savez(tmp_path / "rgb.npz", rgb)  # the only array, whatever its name
    np.testing.assert_allclose(
        load_corpus(str(tmp_path / "rgb.npz"), SIZE).images, rgb.mean(axis=3), atol=1e-6
    )


def test_hdf5_round_trip_and_resize(tmp_path: Path) -> None:
    images = np.random.default_rng(1).random((5, 14, 14)).astype(np.float32)
    with h5py.File(tmp_path / "corpus.h5", "w") as file:
        file["images"] = images
        file["labels"] = np.arange(5)
    np.testing.assert_allclose(load_corpus(str(tmp_path / "corpus.h5"), 14).images, images, atol=1e-6)
    larger = load_corpus(str(tmp_path / "corpus.h5"), SIZE).images
    assert larger.shape == (5, SIZE, SIZE)
    np.testing.assert_allclose(larger.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=0.05)

    with h5py.File(tmp_path / "rgba.hdf5", "w") as file:
        file["group/pictures"] = np.full((2, SIZE, SIZE, 4), [30, 60, 90, 255], dtype=np.uint8)
    np.testing.assert_allclose(load_corpus(str(tmp_path / "rgba.hdf5"), SIZE).images, 60 / 255, atol=1e-6)


def test_folder_of_images_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gray = (rng.random((2, SIZE, SIZE)) * 255).astype(np.uint8)
    rgb = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    for index, image in enumerate(gray):
        Image.fromarray(image).save(tmp_path / f"a{index}.png")
    Image.fromarray(rgb).save(tmp_path / "b.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    loaded = load_corpus(str(tmp_path), SIZE).images
    assert loaded.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(loaded[:2], gray / 255.0, atol=1e-6)
    expected_gray = np.asarray(Image.fromarray(rgb).convert("L")) / 255.0
    np.testing.assert_allclose(loaded[2], expected_gray, atol=1e-6)
    assert load_corpus(str(tmp_path), 10).images.shape == (3, 10, 10)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: "imagenet", "not a built-in corpus .*digits"),
        (lambda d: str(d / "missing.npz"), "no such file or folder"),
        (lambda d: d, "no image files"),
        (lambda d: _npz(d, images=np.full((2, 5, 5), 1.5)), r"within \[0, 1\]"),
        (lambda d: _npz(d, images=np.zeros((0, 5, 5))), "no images"),
        (lambda d: _npz(d, a=np.zeros((2, 5, 5)), b=np.zeros((2, 5, 5))), "not exactly one array"),
        (lambda d: _npz(d, images=np.zeros((2, 5, 5), np.int16)), "uint8 or float"),
        (lambda d: _npz(d, images=np.zeros((2, 5, 5, 2))), r"\[n, H, W, C\]"),
        (lambda d: "binary-patterns:ten", "must be an integer"),
        (lambda d: "binary-patterns:\u00b2", "must be an integer"),  # a superscript 2: isdigit(), not ASCII
        (lambda d: "binary-patterns:40", "between 2 and the image size"),
        (lambda d: "figures:4", "between 5 and the image size"),
    ],
)
def test_bad_inputs_are_data_errors(tmp_path: Path, make, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_corpus(str(make(tmp_path)), SIZE)


def _npz(folder: Path, **arrays: np.ndarray) -> Path:
    path = folder / "corpus.npz"
    np.savez(path, **arrays)
    return path


# digest


def test_digest_depends_on_the_images_only() -> None:
    images = noise(4, seed=1)
    digest = PriorCorpus("one", images).digest
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert PriorCorpus("other name", images.copy()).digest == digest
    changed = images.copy()
    changed[2, 5, 7] += 0.01
    assert PriorCorpus("one", changed).digest != digest
    assert PriorCorpus("one", images[:, :, ::-1].copy()).digest != digest

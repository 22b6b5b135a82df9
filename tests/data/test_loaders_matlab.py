"""load_mat on small MATLAB files written here: v5 through scipy, v7.3 as MATLAB lays it out in HDF5."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from fmri_data.errors import DataError
from fmri_data.loaders.matlab import is_mat_v73, load_mat

# An asymmetric 4x4 image: a bright pixel top-right and a mid-grey one bottom-left, so a transposed or
# flipped read is caught.
UPRIGHT = np.zeros((4, 4), dtype=np.uint8)
UPRIGHT[0, 3] = 255
UPRIGHT[3, 0] = 51
OTHER = np.full((4, 4), 102, dtype=np.uint8)


def matlab_rows(*images: np.ndarray) -> np.ndarray:
    """Images as MATLAB stores them: one column-major row per image."""
    return np.stack([image.flatten(order="F") for image in images])


def layout(**overrides: np.ndarray) -> dict[str, np.ndarray]:
    """Three training and two test trials; UPRIGHT is shown in training and again in test."""
    rng = np.random.default_rng(0)
    variables = {
        "fmriTrn": rng.normal(size=(3, 5)),
        "fmriTest": rng.normal(size=(2, 5)),
        "stimTrn": matlab_rows(UPRIGHT, OTHER, OTHER.T // 2),
        "stimTest": matlab_rows(OTHER // 3, UPRIGHT),
        "labelTrn": np.array([[1], [2], [2]], dtype=np.uint8),
        "labelTest": np.array([[1], [1]], dtype=np.uint8),
    }
    variables.update(overrides)
    return variables


def write_v5(path: Path, variables: dict[str, np.ndarray]) -> Path:
    scipy.io.savemat(path, variables)
    return path


def write_v73(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A MATLAB v7.3 file: HDF5 after a 512-byte userblock holding the text header, matrices transposed."""
    classes = {np.dtype(np.uint8): "uint8", np.dtype(np.float64): "double", np.dtype(bool): "logical"}
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, value in variables.items():
            value = np.asarray(value)
            stored = value.astype(np.uint8) if value.dtype == bool else value
            dataset = handle.create_dataset(key, data=stored.T)
            dataset.attrs["MATLAB_class"] = np.bytes_(classes[value.dtype])
        handle.create_group("#refs#")
    with open(path, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 2024 HDF5 schema 1.00 .")
    return path


@pytest.fixture(params=["v5", "v7.3"])
def write(request: pytest.FixtureRequest):
    return write_v5 if request.param == "v5" else write_v73


def test_reads_both_versions_alike(tmp_path: Path, write) -> None:
    variables = layout()
    data = load_mat(write(tmp_path / "small.mat", variables), name="small")
    assert data.n_trials == 5
    assert data.n_voxels == 5
    assert data.image_shape == (4, 4)
    np.testing.assert_allclose(data.fmri, np.vstack([variables["fmriTrn"], variables["fmriTest"]]), rtol=1e-6)
    np.testing.assert_array_equal(data.given_test, [False, False, False, True, True])
    np.testing.assert_array_equal(data.labels, [1, 2, 2, 1, 1])
    assert data.run is None
    assert data.name == "small"
    assert data.metadata["source"] == str(tmp_path / "small.mat")


def test_images_come_out_upright_and_scaled(tmp_path: Path, write) -> None:
    data = load_mat(write(tmp_path / "small.mat", layout()))
    first = data.images[0]
    assert first[0, 3] == pytest.approx(1.0)
    assert first[3, 0] == pytest.approx(0.2)
    assert first.sum() == pytest.approx(1.2)
    assert data.images[1] == pytest.approx(np.full((4, 4), 0.4))


def test_repeated_image_shares_a_stimulus_id_across_train_and_test(tmp_path: Path, write) -> None:
    data = load_mat(write(tmp_path / "small.mat", layout()))
    ids = data.stimulus_id
    assert ids[0] == ids[4]
    assert len({ids[0], ids[1], ids[2], ids[3]}) == 4
    assert data.n_stimuli == 4


def test_version_is_recorded(tmp_path: Path) -> None:
    v5 = write_v5(tmp_path / "a.mat", layout())
    v73 = write_v73(tmp_path / "b.mat", layout())
    assert not is_mat_v73(v5)
    assert is_mat_v73(v73)
    assert load_mat(v5).metadata["format"] == "mat-v5"
    assert load_mat(v73).metadata["format"] == "mat-v7.3"


def test_labels_as_runs(tmp_path: Path) -> None:
    data = load_mat(write_v5(tmp_path / "m.mat", layout()), labels_are="run")
    np.testing.assert_array_equal(data.run, [1, 2, 2, 1, 1])
    assert data.labels is None


def test_labels_are_optional(tmp_path: Path) -> None:
    variables = layout()
    del variables["labelTrn"], variables["labelTest"]
    data = load_mat(write_v5(tmp_path / "m.mat", variables))
    assert data.labels is None
    assert data.run is None


def test_float_images_in_unit_range_and_logical_images_kept(tmp_path: Path, write) -> None:
    as_float = layout(stimTrn=layout()["stimTrn"] / 255.0, stimTest=layout()["stimTest"] / 255.0)
    data = load_mat(write(tmp_path / "f.mat", as_float))
    assert data.images[0][0, 3] == pytest.approx(1.0)
    logical = layout(stimTrn=layout()["stimTrn"] > 0, stimTest=layout()["stimTest"] > 0)
    data = load_mat(write(tmp_path / "b.mat", logical))
    assert data.images[0][3, 0] == 1.0
    assert set(np.unique(data.images)) == {0.0, 1.0}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_mat(tmp_path / "absent.mat")


def test_missing_key_names_it_and_lists_present_keys(tmp_path: Path, write) -> None:
    variables = layout()
    del variables["stimTest"]
    with pytest.raises(DataError, match=r"'stimTest' not found .*fmriTest, fmriTrn, labelTest") as err:
        load_mat(write(tmp_path / "m.mat", variables))
    assert "\n" not in str(err.value)


def test_mismatched_trial_counts(tmp_path: Path, write) -> None:
    variables = layout(stimTrn=matlab_rows(UPRIGHT, OTHER))
    with pytest.raises(DataError, match="fmriTrn has 3 trials but stimTrn has 2"):
        load_mat(write(tmp_path / "m.mat", variables))
    variables = layout(labelTest=np.array([[1], [1], [2]], dtype=np.uint8))
    with pytest.raises(DataError, match="labelTest has 3 entries"):
        load_mat(write(tmp_path / "m.mat", variables))


def test_mismatched_voxel_counts(tmp_path: Path) -> None:
    variables = layout(fmriTest=np.zeros((2, 4)))
    with pytest.raises(DataError, match="5 voxels but fmriTest has 4"):
        load_mat(write_v5(tmp_path / "m.mat", variables))


def test_nan_voxels(tmp_path: Path) -> None:
    fmri = layout()["fmriTrn"].copy()
    fmri[1, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN/inf fMRI values \(first at trial 1, voxel 2\)"):
        load_mat(write_v5(tmp_path / "m.mat", layout(fmriTrn=fmri)))


def test_non_square_images(tmp_path: Path) -> None:
    variables = layout(stimTrn=np.zeros((3, 15), np.uint8), stimTest=np.zeros((2, 15), np.uint8))
    with pytest.raises(DataError, match="15 values, which is not a square image"):
        load_mat(write_v5(tmp_path / "m.mat", variables))


def test_images_outside_unit_range(tmp_path: Path) -> None:
    variables = layout(stimTrn=layout()["stimTrn"].astype(float), stimTest=layout()["stimTest"].astype(float))
    with pytest.raises(DataError, match=r"image values span \[0, 255\] but must lie in \[0, 1\]"):
        load_mat(write_v5(tmp_path / "m.mat", variables))


def test_one_sided_labels(tmp_path: Path) -> None:
    variables = layout()
    del variables["labelTest"]
    with pytest.raises(DataError, match="labelTest is missing"):
        load_mat(write_v5(tmp_path / "m.mat", variables))


def test_not_a_mat_file(tmp_path: Path) -> None:
    path = tmp_path / "text.mat"
    path.write_text("not matlab at all\n" * 20)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        load_mat(path)


def test_bad_labels_are(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="labels_are"):
        load_mat(write_v5(tmp_path / "m.mat", layout()), labels_are="stimulus")  # type: ignore[arg-type]

"""Feature files: formats, layouts, naming, several folders, and unusable files."""

import numpy as np
import pytest
import torch

from selfdetr_hf.data import FeatureError, FeatureFolder, check_finite, load_feature_file


@pytest.fixture
def features():
    return np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)


def save(path, array):
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".npz":
        np.savez(path, feats=array)
    else:
        torch.save(torch.from_numpy(array), path)
    return path


@pytest.mark.parametrize("extension", [".npy", ".npz", ".pt"])
def test_each_file_format_reads_back_the_saved_array(tmp_path, features, extension):
    loaded = load_feature_file(save(tmp_path / f"v{extension}", features))
    np.testing.assert_array_equal(np.asarray(loaded), features)


def test_npy_files_are_memory_mapped(tmp_path, features):
    assert isinstance(load_feature_file(save(tmp_path / "v.npy", features)), np.memmap)


def test_npz_takes_the_feats_key_among_several_arrays(tmp_path, features):
    np.savez(tmp_path / "v.npz", feats=features, other=np.zeros(3))
    np.testing.assert_array_equal(load_feature_file(tmp_path / "v.npz"), features)


def test_npz_with_several_arrays_and_no_feats_asks_for_a_key(tmp_path, features):
    np.savez(tmp_path / "v.npz", rgb=features, flow=features)
    with pytest.raises(FeatureError, match=r"v\.npz.*key="):
        load_feature_file(tmp_path / "v.npz")


def test_pt_dict_takes_the_named_key(tmp_path, features):
    torch.save({"rgb": torch.from_numpy(features), "flow": torch.zeros(2, 2)}, tmp_path / "v.pt")
    np.testing.assert_array_equal(load_feature_file(tmp_path / "v.pt", key="rgb"), features)


def test_channels_first_layout_is_transposed(tmp_path, features):
    loaded = load_feature_file(save(tmp_path / "v.npy", features.T.copy()), layout="CT")
    np.testing.assert_array_equal(loaded, features)


def test_prefix_and_suffix_frame_the_video_id(tmp_path, features):
    save(tmp_path / "i3d_vid_rgb.npy", features)
    folder = FeatureFolder(tmp_path, prefix="i3d_", suffix="_rgb")
    assert folder.paths("vid") == [tmp_path / "i3d_vid_rgb.npy"]


def test_several_folders_concatenate_channels(tmp_path, features):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "flow").mkdir()
    save(tmp_path / "rgb" / "vid.npy", features)
    save(tmp_path / "flow" / "vid.npy", -features)
    loaded = FeatureFolder([tmp_path / "rgb", tmp_path / "flow"]).load("vid")
    np.testing.assert_array_equal(loaded, np.concatenate([features, -features], axis=1))


def test_folders_of_different_lengths_are_refused_naming_both_files(tmp_path, features):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "flow").mkdir()
    save(tmp_path / "rgb" / "vid.npy", features)
    save(tmp_path / "flow" / "vid.npy", features.T.copy())  # channels first by mistake
    with pytest.raises(FeatureError, match=r"different lengths .*rgb/vid\.npy \(20, 6\).*flow/vid\.npy \(6, 20\)"):
        FeatureFolder([tmp_path / "rgb", tmp_path / "flow"]).load("vid")


def test_resampling_between_folders_happens_only_when_asked(tmp_path, features):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "flow").mkdir()
    save(tmp_path / "rgb" / "vid.npy", features)
    save(tmp_path / "flow" / "vid.npy", features[::2].copy())
    loaded = FeatureFolder([tmp_path / "rgb", tmp_path / "flow"], resample=True).load("vid")
    assert loaded.shape == (20, 12)
    np.testing.assert_array_equal(loaded[:, :6], features)


def test_one_video_in_two_formats_is_ambiguous_unless_the_extension_is_given(tmp_path, features):
    save(tmp_path / "vid.npy", features)
    save(tmp_path / "vid.pt", features * 2)
    with pytest.raises(FeatureError, match=r"several feature files .*vid\.npy.*vid\.pt"):
        FeatureFolder(tmp_path).load("vid")
    np.testing.assert_array_equal(FeatureFolder(tmp_path, extension=".pt").load("vid"), features * 2)


def test_video_ids_are_the_matching_file_names_of_the_first_folder(tmp_path, features):
    for name in ("i3d_a_rgb.npy", "i3d_b_rgb.pt", "i3d_c_flow.npy", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert FeatureFolder(tmp_path, prefix="i3d_", suffix="_rgb").video_ids() == ["a", "b"]
    with pytest.raises(FileNotFoundError, match=r"no feature files"):
        FeatureFolder(tmp_path, prefix="x_").video_ids()


def test_missing_feature_file_names_the_video_and_the_paths_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"video 'vid'.*vid\.npy.*vid\.npz.*vid\.pt"):
        FeatureFolder(tmp_path).load("vid")


@pytest.mark.parametrize("extension", [".npy", ".npz", ".pt"])
def test_truncated_file_names_the_video_and_the_file(tmp_path, features, extension):
    path = save(tmp_path / f"vid{extension}", features)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FeatureError, match=rf"video 'vid'.*vid\{extension}: unreadable or truncated"):
        FeatureFolder(tmp_path).load("vid")


def test_unreadable_bytes_name_the_file(tmp_path):
    (tmp_path / "vid.npy").write_bytes(b"not numpy at all")
    with pytest.raises(FeatureError, match=r"vid\.npy: unreadable"):
        load_feature_file(tmp_path / "vid.npy")


def test_zero_length_features_name_the_file(tmp_path):
    path = save(tmp_path / "vid.npy", np.zeros((0, 6), dtype=np.float32))
    with pytest.raises(FeatureError, match=r"vid\.npy: zero-length"):
        load_feature_file(path)


def test_one_dimensional_array_is_rejected(tmp_path):
    path = save(tmp_path / "vid.npy", np.zeros(6, dtype=np.float32))
    with pytest.raises(FeatureError, match=r"2-D"):
        load_feature_file(path)


def test_nan_is_reported_with_video_source_and_step(features):
    features[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"video 'vid'.*f\.npy.*time step 7"):
        check_finite(features, "vid", "f.npy")

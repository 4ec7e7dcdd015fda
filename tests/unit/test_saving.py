"""Archives (engine.saving): a registered class round-trips; foreign, corrupt or tampered files get an
ArchiveError with a clear message, and nothing inside a file is ever executed."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from engine.errors import ArchiveError
from engine.nets import build_sequential, describe_sequential, mlp
from engine.saving import (
    FORMAT_NAME,
    FORMAT_VERSION,
    detector_to_bytes,
    explainer_to_bytes,
    load_detector,
    load_explainer,
    model_weights,
    register_archivable,
    save_detector,
    save_explainer,
    set_model_weights,
)
from tests.crafted_files import with_manifest, zip_members, zipped

TRAP_CALLS: list[str] = []


def _trap_fired():
    """Would run if an archive's pickled object were ever unpickled."""
    TRAP_CALLS.append("unpickled!")
    return "trap"


class Trap:
    def __reduce__(self):
        return (_trap_fired, ())


@register_archivable("detector")
class SavingTestDetector:
    """A tiny detector: a network, a learned centre and a threshold."""

    def __init__(self, n_features=3, seed=0):
        self.n_features = n_features
        self.net = mlp(n_features, [4], 2, seed=seed)
        self.center_ = np.arange(n_features, dtype=np.float32)
        self.threshold = 0.25

    def _archive_state(self):
        config = {"n_features": self.n_features, "threshold": self.threshold, "net": describe_sequential(self.net)}
        return config, {"center": self.center_, **model_weights("net", self.net)}

    @classmethod
    def _from_archive(cls, config, arrays):
        detector = cls.__new__(cls)
        detector.n_features = int(config["n_features"])
        detector.threshold = float(config["threshold"])
        detector.net = build_sequential(config["net"])
        set_model_weights("net", detector.net, arrays)
        detector.center_ = arrays["center"]
        return detector


@register_archivable("explainer")
class SavingTestExplainer:
    def __init__(self, names=("a", "b")):
        self.names = list(names)

    def _archive_state(self):
        return {"names": self.names}, {"importance": np.array([0.5, 0.25])}

    @classmethod
    def _from_archive(cls, config, arrays):
        explainer = cls(config["names"])
        explainer.importance_ = arrays["importance"]
        return explainer


class Unregistered:
    def _archive_state(self):
        return {}, {}


@pytest.fixture(scope="module")
def detector():
    return SavingTestDetector(seed=3)


@pytest.fixture(scope="module")
def archive(detector):
    return detector_to_bytes(detector)


def _with_arrays(archive: bytes, edit) -> bytes:
    members = zip_members(archive)
    with np.load(io.BytesIO(members["arrays.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    members["arrays.npz"] = buffer.getvalue()
    return zipped(members)


# -- round trips ----------------------------------------------------------------------------------


def test_detector_round_trips_through_a_file(detector, tmp_path):
    path = save_detector(detector, tmp_path / "tiny.lantern")
    assert path.exists()
    loaded = load_detector(path)
    assert type(loaded) is SavingTestDetector
    assert loaded is not detector and loaded.net is not detector.net
    assert loaded.threshold == 0.25 and loaded.n_features == 3
    np.testing.assert_array_equal(loaded.center_, detector.center_)
    for a, b in zip(loaded.net.get_weights(), detector.net.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    np.testing.assert_allclose(loaded.net(x).numpy(), detector.net(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize("as_source", [bytes, bytearray, io.BytesIO, str])
def test_detector_loads_from_bytes_a_file_object_or_a_path_string(archive, tmp_path, as_source):
    if as_source is str:
        path = tmp_path / "d.lantern"
        path.write_bytes(archive)
        source = str(path)
    else:
        source = as_source(archive)
    assert load_detector(source).threshold == 0.25


def test_archive_holds_exactly_a_json_manifest_and_an_npz(archive):
    members = zip_members(archive)
    assert sorted(members) == ["arrays.npz", "manifest.json"]
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == FORMAT_NAME and manifest["format_version"] == FORMAT_VERSION
    assert manifest["kind"] == "detector" and manifest["class"] == "SavingTestDetector"
    assert manifest["config"]["net"]["layers"][0]["class"] == "Dense"
    with np.load(io.BytesIO(members["arrays.npz"]), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["center", "net/0", "net/1", "net/2", "net/3"]


def test_explainer_round_trip_and_kinds_are_not_mixed(tmp_path):
    path = save_explainer(SavingTestExplainer(["x", "y"]), tmp_path / "e.lantern")
    loaded = load_explainer(path)
    assert loaded.names == ["x", "y"]
    np.testing.assert_array_equal(loaded.importance_, [0.5, 0.25])
    with pytest.raises(ArchiveError, match="this archive holds a 'explainer', not a detector"):
        load_detector(path)
    with pytest.raises(ArchiveError, match="holds a 'detector', not a explainer"):
        load_explainer(detector_to_bytes(SavingTestDetector()))


def test_only_registered_classes_of_the_right_kind_can_be_saved():
    with pytest.raises(TypeError, match="Unregistered cannot be saved as a detector archive"):
        detector_to_bytes(Unregistered())
    with pytest.raises(TypeError, match="SavingTestExplainer cannot be saved as a detector archive"):
        detector_to_bytes(SavingTestExplainer())
    with pytest.raises(TypeError, match="cannot be saved as a explainer archive"):
        explainer_to_bytes(SavingTestDetector())


def test_unreadable_source_type_is_a_type_error():
    with pytest.raises(TypeError, match="pass a path, bytes or a binary file"):
        load_detector(12345)


# -- foreign and corrupt files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"name,score\n1,2\n", b"\x89PNG\r\n\x1a\n" + bytes(64), b"PK\x03\x04 truncated"],
    ids=["empty", "csv", "png", "truncated-zip-header"],
)
def test_a_file_that_is_not_a_zip_is_refused(data):
    with pytest.raises(ArchiveError, match="not a Lantern archive: the file is not a zip archive"):
        load_detector(data)


def test_a_truncated_archive_is_refused(archive):
    with pytest.raises(ArchiveError):
        load_detector(archive[: len(archive) // 2])


def test_an_extra_member_is_refused(archive):
    members = zip_members(archive)
    members["model.keras"] = b"not even a model"
    with pytest.raises(ArchiveError, match=r"expected members \['manifest.json', 'arrays.npz'\], found"):
        load_detector(zipped(members))


@pytest.mark.parametrize("missing", ["manifest.json", "arrays.npz"])
def test_a_missing_member_is_refused(archive, missing):
    members = zip_members(archive)
    del members[missing]
    with pytest.raises(ArchiveError, match="expected members"):
        load_detector(zipped(members))


def test_a_manifest_that_is_not_json_is_refused(archive):
    members = zip_members(archive)
    members["manifest.json"] = b"{'format': 'lantern-archive',"
    with pytest.raises(ArchiveError, match="archive manifest is not valid JSON"):
        load_detector(zipped(members))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format="keras"), "the manifest has no Lantern format marker"),
        (lambda m: m.pop("format"), "the manifest has no Lantern format marker"),
        (lambda m: m.update(format_version=2), "archive format version 2 is not supported"),
        (lambda m: m.update(format_version="1"), "archive format version '1' is not supported"),
        (lambda m: m.update(kind="explainer"), "this archive holds a 'explainer', not a detector"),
        (lambda m: m.update({"class": "os.system"}), "names class 'os.system', which this engine does not load"),
        (lambda m: m.update({"class": "SavingTestExplainer"}), "names class 'SavingTestExplainer'"),
        (lambda m: m.pop("config"), "archive content does not fit SavingTestDetector"),
        (lambda m: m["config"].pop("threshold"), "archive content does not fit SavingTestDetector"),
    ],
    ids=["format", "no-format", "version", "version-type", "kind", "unknown-class", "class-of-other-kind",
         "no-config", "config-key"],
)
def test_a_tampered_manifest_is_refused(archive, edit, message):
    with pytest.raises(ArchiveError, match=message):
        load_detector(with_manifest(archive, edit))


def test_a_manifest_that_is_a_json_list_is_refused(archive):
    members = zip_members(archive)
    members["manifest.json"] = b"[1, 2, 3]"
    with pytest.raises(ArchiveError, match="no Lantern format marker"):
        load_detector(zipped(members))


def _set_layer(manifest, **changes):
    manifest["config"]["net"]["layers"][0].update(changes)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: _set_layer(m, **{"class": "Lambda", "config": {"function": "__import__('os').system('id')"}}),
         "archive names layer type 'Lambda', which is not allowed"),
        (lambda m: _set_layer(m, **{"class": "TFSMLayer"}), "layer type 'TFSMLayer', which is not allowed"),
        (lambda m: _set_layer(m, config={"units": 4, "activation": "os.system"}),
         "activation 'os.system' of a Dense layer is not supported"),
        (lambda m: m["config"]["net"].update(layers="Dense"), "network spec is malformed"),
        (lambda m: m["config"]["net"].pop("input_shape"), "network spec is malformed"),
        (lambda m: m["config"]["net"].update(input_shape=["three"]), "network spec is malformed"),
        (lambda m: _set_layer(m, config={"units": -4}), "network spec is malformed"),
    ],
    ids=["lambda", "tfsm", "activation", "layers-not-list", "no-input-shape", "bad-input-shape", "bad-units"],
)
def test_a_tampered_network_spec_is_refused(archive, edit, message):
    with pytest.raises(ArchiveError, match=message):
        load_detector(with_manifest(archive, edit))


def test_unknown_layer_arguments_are_dropped_not_passed_on(archive):
    def add_dangerous_keys(manifest):
        layer = manifest["config"]["net"]["layers"][0]["config"]
        layer["kernel_initializer"] = {"class_name": "Lambda", "config": {"function": "evil"}}
        layer["dtype_policy"] = "mixed_float16"

    loaded = load_detector(with_manifest(archive, add_dangerous_keys))
    dense = loaded.net.layers[0]
    assert dense.dtype_policy.name == "float32"
    assert type(dense.kernel_initializer).__name__ == "GlorotUniform"


# -- arrays ---------------------------------------------------------------------------------------


def test_a_weight_of_the_wrong_shape_is_refused(archive):
    def reshape(arrays):
        arrays["net/0"] = np.zeros((5, 4), dtype=np.float32)

    with pytest.raises(ArchiveError, match=r"archive weight net/0 has shape \(5, 4\), the network needs \(3, 4\)"):
        load_detector(_with_arrays(archive, reshape))


def test_missing_or_extra_weights_are_refused(archive):
    with pytest.raises(ArchiveError, match="do not match its network \\(4 arrays expected\\)"):
        load_detector(_with_arrays(archive, lambda arrays: arrays.pop("net/3")))
    with pytest.raises(ArchiveError, match="do not match its network"):
        load_detector(_with_arrays(archive, lambda arrays: arrays.update({"net/4": np.zeros(2)})))


def test_an_object_array_is_refused_and_never_unpickled(archive):
    TRAP_CALLS.clear()

    def add_trap(arrays):
        arrays["center"] = np.array([Trap(), 1], dtype=object)

    tampered = _with_arrays(archive, add_trap)
    assert b"_trap_fired" in zip_members(tampered)["arrays.npz"]  # the pickle is really in there
    with pytest.raises(ArchiveError, match="archive arrays are unreadable.*allow_pickle"):
        load_detector(tampered)
    assert TRAP_CALLS == []


def test_an_npz_that_is_not_a_zip_is_refused(archive):
    members = zip_members(archive)
    members["arrays.npz"] = b"definitely not numpy"
    with pytest.raises(ArchiveError, match="archive arrays are unreadable"):
        load_detector(zipped(members))


def test_a_zip_bomb_member_is_refused_before_it_is_unpacked(archive):
    members = zip_members(archive)
    members["manifest.json"] = b"{" + b" " * (8 * 2**20) + b"}"  # 8 MB of spaces deflate to ~8 KB
    with pytest.raises(ArchiveError, match="archive member manifest.json is too large or compressed suspiciously"):
        load_detector(zipped(members))


def test_a_zip_bomb_inside_the_npz_is_refused_before_numpy_reads_it(archive):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**20,)})
        zf.writestr("center.npy", header.getvalue() + bytes(8 * 2**20))  # 8 MB of zeros, ~8 KB compressed
    members = zip_members(archive)
    members["arrays.npz"] = inner.getvalue()
    # Stored without outer compression, so only the inner ratio gives the bomb away.
    with pytest.raises(ArchiveError, match="archive array center.npy is too large or compressed suspiciously"):
        load_detector(zipped(members, compression=zipfile.ZIP_STORED))


def test_an_array_header_declaring_an_impossible_shape_is_refused(archive):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
        zf.writestr("center.npy", header.getvalue() + bytes(16))
    members = zip_members(archive)
    members["arrays.npz"] = inner.getvalue()
    with pytest.raises(ArchiveError):
        load_detector(zipped(members))


# -- network weights helpers ------------------------------------------------------------------------


def test_model_weights_and_set_model_weights_round_trip():
    source, target = mlp(3, [4], 2, seed=1), mlp(3, [4], 2, seed=2)
    arrays = model_weights("enc", source)
    assert sorted(arrays) == ["enc/0", "enc/1", "enc/2", "enc/3"]
    set_model_weights("enc", target, {**arrays, "dec/0": np.zeros(1)})  # other prefixes are ignored
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- feature names and loading in a fresh interpreter ---------------------------------------------


def test_feature_names_are_recorded_from_a_keyword_and_read_back(detector, tmp_path):
    path = save_detector(detector, tmp_path / "named.lantern", feature_names=["x0", "x1", "x2"])
    manifest = json.loads(zip_members(path.read_bytes())["manifest.json"])
    assert manifest["feature_names"] == ["x0", "x1", "x2"]
    assert load_detector(path).feature_names_ == ["x0", "x1", "x2"]


def test_feature_names_come_from_the_feature_names_attribute(tmp_path):
    named = SavingTestDetector(seed=1)
    named.feature_names_ = ["a", "b", "c"]
    assert load_detector(detector_to_bytes(named)).feature_names_ == ["a", "b", "c"]


def test_an_archive_without_feature_names_still_loads_with_none(archive):
    assert "feature_names" not in json.loads(zip_members(archive)["manifest.json"])
    assert load_detector(archive).feature_names_ is None


@pytest.mark.parametrize("names", [[1, 2, 3], ["a", "a", "b"], "abc"])
def test_feature_names_must_be_distinct_strings(detector, names):
    with pytest.raises(TypeError, match="feature names"):
        detector_to_bytes(detector, feature_names=names)


def test_tampered_feature_names_in_an_archive_are_refused(archive):
    tampered = with_manifest(archive, lambda m: m.update(feature_names=[{"x": 1}]))
    with pytest.raises(ArchiveError, match="feature names"):
        load_detector(tampered)


def test_load_detector_works_in_a_fresh_interpreter_that_imported_only_engine_saving(tmp_path):
    """The archive names OutlierAEGMM; engine.saving imports the algorithm modules itself on a registry miss."""
    import subprocess
    import sys

    from engine.od import OutlierAEGMM

    X = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    det = OutlierAEGMM().fit(X, epochs=1, batch_size=32, verbose=False, seed=0)
    det.infer_threshold(X, threshold_perc=90)
    path = save_detector(det, tmp_path / "aegmm.lantern", feature_names=["a", "b", "c"])
    code = (
        "import sys; from engine.saving import load_detector; d = load_detector(sys.argv[1]); "
        "print(type(d).__name__, d.feature_names_)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "OutlierAEGMM ['a', 'b', 'c']"

"""Tests of the bundled-dataset registry (engine.datasets) against the real files in assets/data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from engine import datasets as D

ALL_KEYS = [d.key for d in D.list_datasets()]

# The real, known shapes of the bundled data (rows, columns incl. label/time/split).
EXPECTED_SHAPES = {
    "adult": (32561 + 16281, 16),
    "shuttle": (49097, 10),
    "cardio": (1831, 22),
    "ecg_mitdb": (7500, 3),
    "ecg_synth": (20000, 3),
    "ecg_synth_train": (10000, 3),
    "ecg_synth_test": (10000, 3),
    "mnist5k": (5000, 785),
    "digits": (1797, 65),
    "iris": (150, 5),
    "wine": (178, 14),
    "breast_cancer": (569, 31),
}

# Columns that are allowed to contain missing values.
MAY_HAVE_MISSING = {"adult": {"workclass", "occupation", "native_country"}}


def test_registry_has_the_expected_keys():
    assert sorted(ALL_KEYS) == sorted(EXPECTED_SHAPES)
    assert len(set(ALL_KEYS)) == len(ALL_KEYS)


@pytest.mark.parametrize("key", ALL_KEYS)
def test_entry_is_well_formed(key):
    ds = D.get_dataset(key)
    assert ds.key == key
    assert ds.kind in D.KINDS
    assert ds.title and ds.description and ds.licence and ds.source
    assert set(ds.suggested_for) <= set(D.WORKFLOWS) and ds.suggested_for
    assert set(ds.roles.values()) <= set(D.ROLES)
    if ds.label is not None:
        assert ds.roles.get(ds.label) == "label"
    if ds.time is not None:
        assert ds.roles.get(ds.time) == "time"
    if ds.kind == "image":
        assert ds.image_shape is not None
    else:
        assert ds.image_shape is None
    if ds.kind == "timeseries":
        assert ds.time is not None
    assert ds.shape == EXPECTED_SHAPES[key]
    assert ds.path == D.DATA_DIR / f"{key}.csv.gz"
    assert ds.path.is_file()


@pytest.mark.parametrize("key", ALL_KEYS)
def test_loads_with_declared_columns_and_shape(key):
    ds = D.get_dataset(key)
    df = D.load_dataset(key)
    assert isinstance(df, pd.DataFrame)
    assert df.shape == EXPECTED_SHAPES[key]
    assert df.columns.is_unique
    for col in ds.roles:
        assert col in df.columns, f"{key}: role column {col!r} missing"
    if ds.label is not None:
        assert ds.label in df.columns
        assert df[ds.label].notna().all()
    if ds.time is not None:
        assert ds.time in df.columns
        t = df[ds.time].to_numpy()
        assert np.array_equal(t, np.arange(len(df)))
    # No all-NaN columns; missing values only where the source has them.
    assert not df.isna().all().any()
    allowed = MAY_HAVE_MISSING.get(key, set())
    with_missing = set(df.columns[df.isna().any()])
    assert with_missing <= allowed, f"{key}: unexpected missing values in {with_missing - allowed}"
    # Everything that is not categorical/label/ignore is numeric.
    for col in ds.feature_columns(list(df.columns)):
        if ds.roles.get(col) != "categorical":
            assert pd.api.types.is_numeric_dtype(df[col]), f"{key}: {col} is not numeric"


@pytest.mark.parametrize("key", [d.key for d in D.list_datasets("image")])
def test_image_pixels_match_image_shape(key):
    ds = D.get_dataset(key)
    df = D.load_dataset(key)
    h, w = ds.image_shape
    pixels = [c for c in df.columns if c != ds.label]
    assert pixels == [f"pixel{i}" for i in range(h * w)]
    values = df[pixels].to_numpy()
    assert np.issubdtype(values.dtype, np.integer)
    assert values.min() == 0
    assert values.max() == (255 if key == "mnist5k" else 16)
    assert sorted(df[ds.label].unique()) == list(range(10))


def test_adult_splits_labels_and_missing():
    df = D.load_dataset("adult")
    assert df["split"].value_counts().to_dict() == {"train": 32561, "test": 16281}
    assert set(df["income"]) == {"<=50K", ">50K"}
    counts = df.groupby("split")["income"].value_counts()
    assert counts[("train", ">50K")] == 7841
    assert counts[("test", ">50K")] == 3846
    assert not df.isin(["?"]).any().any()
    assert df["workclass"].isna().sum() == 2799
    assert df["occupation"].isna().sum() == 2809
    assert df["native_country"].isna().sum() == 857
    ds = D.get_dataset("adult")
    assert ds.roles["split"] == "ignore"
    for col in ("workclass", "education", "sex", "native_country"):
        assert ds.roles[col] == "categorical"
    for col in ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"):
        assert pd.api.types.is_integer_dtype(df[col])
        assert col not in ds.roles
    # No stray whitespace from the raw ", "-separated files.
    for col in (*[c for c, r in ds.roles.items() if r == "categorical"], "income"):
        vals = df[col].dropna()
        assert (vals == vals.str.strip()).all()


def test_shuttle_anomaly_rate():
    df = D.load_dataset("shuttle")
    assert set(df["anomaly"].unique()) == {0, 1}
    assert int(df["anomaly"].sum()) == 3511
    assert df["anomaly"].mean() == pytest.approx(0.0715, abs=5e-4)
    assert list(df.columns) == [f"f{i}" for i in range(1, 10)] + ["anomaly"]


def test_cardio_is_odds_filtering():
    df = D.load_dataset("cardio")
    assert int(df["anomaly"].sum()) == 176
    assert int((df["anomaly"] == 0).sum()) == 1655
    assert list(df.columns[:3]) == ["LB", "AC", "FM"] and df.columns[-2] == "Tendency"


def test_timeseries_anomaly_segments():
    mit = D.load_dataset("ecg_mitdb")
    idx = np.flatnonzero(mit["label"].to_numpy() == 1)
    assert len(idx) == 352
    assert idx[0] == 6936 and idx[-1] == 7287 and np.all(np.diff(idx) == 1)

    train = D.load_dataset("ecg_synth_train")
    assert int(train["label"].sum()) == 0

    test = D.load_dataset("ecg_synth_test")
    lab = test["label"].to_numpy()
    assert int(lab.sum()) == 300
    starts = np.flatnonzero(np.diff(np.r_[0, lab]) == 1)
    assert list(starts) == [1560, 6600, 6940]
    joined = D.load_dataset("ecg_synth")  # the two synthetic series end to end, time running on
    np.testing.assert_array_equal(joined["ecg"].to_numpy(), np.r_[train["ecg"].to_numpy(), test["ecg"].to_numpy()])
    np.testing.assert_array_equal(joined["label"].to_numpy(), np.r_[train["label"].to_numpy(), lab])
    assert joined["time"].tolist() == list(range(20000))
    for df in (mit, train, test):
        assert pd.api.types.is_float_dtype(df["ecg"])
        assert np.isfinite(df["ecg"].to_numpy()).all()


def test_small_sklearn_sets():
    iris = D.load_dataset("iris")
    assert list(iris.columns) == ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    assert iris["species"].value_counts().to_dict() == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert iris.loc[0, ["sepal_length", "sepal_width", "petal_length", "petal_width"]].tolist() == [5.1, 3.5, 1.4, 0.2]

    wine = D.load_dataset("wine")
    assert wine["cultivar"].value_counts().sort_index().tolist() == [59, 71, 48]
    assert "od280_od315_of_diluted_wines" in wine.columns

    bc = D.load_dataset("breast_cancer")
    assert bc["diagnosis"].value_counts().to_dict() == {"benign": 357, "malignant": 212}
    assert bc.loc[0, "mean_radius"] == 17.99


def test_load_returns_independent_copy():
    first = D.load_dataset("iris")
    first.loc[0, "sepal_length"] = -1.0
    first["extra"] = 1
    first.loc[1, "species"] = "changed"
    second = D.load_dataset("iris")
    assert second.shape == (150, 5)
    assert second.loc[0, "sepal_length"] == 5.1
    assert second.loc[1, "species"] == "setosa"
    assert second is not D.load_dataset("iris")


def test_unknown_key_raises_keyerror_listing_valid_keys():
    with pytest.raises(KeyError) as info:
        D.load_dataset("no_such_dataset")
    message = str(info.value)
    assert "no_such_dataset" in message
    for key in ALL_KEYS:
        assert key in message
    with pytest.raises(KeyError):
        D.get_dataset("../../etc/passwd")
    with pytest.raises(KeyError):
        D.dataset_path("Iris")


def test_list_datasets_filters_by_kind():
    assert [d.key for d in D.list_datasets("timeseries")] == ["ecg_mitdb", "ecg_synth", "ecg_synth_train",
                                                                   "ecg_synth_test"]
    assert [d.key for d in D.list_datasets("image")] == ["mnist5k", "digits"]
    tabular = {d.key for d in D.list_datasets("tabular")}
    assert tabular == {"adult", "shuttle", "cardio", "iris", "wine", "breast_cancer"}
    with pytest.raises(ValueError):
        D.list_datasets("audio")


def test_registry_entries_are_immutable():
    ds = D.get_dataset("adult")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.label = "age"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ds.roles["age"] = "ignore"  # type: ignore[index]
    hash(ds)


def test_assets_stay_small():
    total = sum(p.stat().st_size for p in D.DATA_DIR.glob("*.csv.gz"))
    assert total < 8 * 1024 * 1024


def test_module_does_not_import_streamlit():
    source = (D.DATA_DIR.parent.parent / "engine" / "datasets.py").read_text(encoding="utf-8")
    assert "import streamlit" not in source

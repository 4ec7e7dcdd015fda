"""ui.timeseries: long series are thinned without losing spikes; the heatmap stays within its column budget."""

import numpy as np

from ui.timeseries import bucket_max, envelope_indices, score_heatmap, series_figure, window_figure


def test_envelope_keeps_short_series_whole_and_keeps_spikes_of_long_ones():
    assert envelope_indices(np.arange(10.0), 100).tolist() == list(range(10))
    values = np.random.default_rng(0).normal(size=200_000)
    values[123_457], values[7] = 50.0, -50.0
    kept = envelope_indices(values, 4000)
    assert len(kept) <= 4002 and np.all(np.diff(kept) > 0)
    assert {0, 7, 123_457, 199_999} <= set(kept.tolist())


def test_envelope_ignores_missing_values():
    values = np.full(1000, np.nan)
    values[500] = 1.0
    assert 500 in envelope_indices(values, 10)


def test_bucket_max_covers_every_step_and_keeps_each_buckets_largest_score():
    scores = np.zeros((10_001, 2))
    scores[10_000, 1] = 3.0
    starts, maxima = bucket_max(scores, 2000)
    assert len(starts) <= 2000 and starts[0] == 0
    assert maxima.shape == (len(starts), 2)
    assert maxima[-1, 1] == 3.0 and maxima[:, 0].max() == 0.0


def test_heatmap_has_one_row_per_feature_and_is_centred_on_the_threshold():
    scores = np.random.default_rng(1).normal(size=(50_000, 3))
    fig = score_heatmap(np.arange(50_000), scores, ["a", "b", "c"], max_columns=2000)
    heatmap = fig.data[0]
    assert heatmap.z.shape[0] == 3 and heatmap.z.shape[1] <= 2000
    assert list(heatmap.y) == ["a", "b", "c"] and heatmap.zmid == 0.0


def test_series_figure_draws_every_flag_and_shades_labelled_stretches():
    n = 30_000
    x = np.arange(n)
    series = np.sin(x * 0.01)[:, None]
    flagged = np.zeros((n, 1), bool)
    flagged[[5, 17_000]] = True
    labelled = np.zeros(n, bool)
    labelled[100:200] = labelled[9000:9100] = True
    fig = series_figure(x, series, series, flagged, ["s"], labelled=labelled)
    marked = next(t for t in fig.data if t.name == "flagged")
    assert list(marked.x) == [5, 17_000]
    assert len(fig.data[0].x) <= 4002  # the line is thinned
    assert len(fig.layout.shapes) == 2


def test_window_figure_has_a_score_row_below_the_features():
    window = np.zeros((20, 2))
    scores = np.full((20, 2), -1.0)
    scores[3, 1] = 2.0
    fig = window_figure(np.arange(20), window, window, scores, ["a", "b"])
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "feature scores (threshold at 0)"]
    flagged_b = [t for t in fig.data if t.name == "flagged"][1]
    assert list(flagged_b.x) == [3]


def test_heatmap_colours_are_centred_on_each_features_threshold_so_every_flagged_value_is_red():
    rng = np.random.default_rng(2)
    # Two features on very different scales; a few small positive scores (just above the threshold) in each.
    scores = np.column_stack([rng.normal(-50.0, 10.0, 3000), rng.normal(-0.5, 0.1, 3000)])
    scores[[10, 2000], 0] = [0.01, 3.0]
    scores[[500], 1] = [0.001]
    fig = score_heatmap(np.arange(3000), scores, ["big", "small"], max_columns=5000)
    heatmap = fig.data[0]
    z = np.asarray(heatmap.z)
    assert heatmap.zmid == 0.0 and heatmap.zmin == -heatmap.zmax  # the midpoint of the colour scale is 0
    assert ((z > 0) == (scores.T > 0)).all()  # above 0 exactly where a feature is above its threshold
    assert z.min() >= -1 and z.max() <= 1 and z[1].min() < -0.5  # each feature uses the whole range below
    # The scale splits at the midpoint: just above it is already red, just below it blue.
    stops = [(float(p), c) for p, c in heatmap.colorscale]
    assert [p for p, _ in stops].count(0.5) == 2
    below, above = stops.index((0.5, stops[1][1])), len(stops) - 1
    assert not _reddish(stops[below][1]) and all(_reddish(c) for p, c in stops[below + 1:above + 1])
    assert all(not _reddish(c) for p, c in stops[:below + 1])
    np.testing.assert_allclose(np.asarray(heatmap.customdata), scores.T)  # hover shows the score itself


def _reddish(colour: str) -> bool:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return r > b


def test_heatmap_of_one_feature_is_a_readable_band_not_a_strip():
    fig = score_heatmap(np.arange(100), np.zeros((100, 1)), ["ecg"])
    assert fig.layout.height >= 300
    many = score_heatmap(np.arange(100), np.zeros((100, 20)), [f"f{i}" for i in range(20)])
    assert many.layout.height >= 150 + 20 * 30

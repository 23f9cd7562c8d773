"""Drift statistics against reference implementations, false-alarm rates, detection, merging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlmedic.data.drift import ReferenceProfile, compare, psi


def _profile(frame: pd.DataFrame, **kwargs: object) -> ReferenceProfile:
    kinds = {
        c: ("numeric" if pd.api.types.is_numeric_dtype(frame[c]) else "categorical")
        for c in frame.columns
    }
    return ReferenceProfile(**kwargs).fit(frame, kinds)  # type: ignore[arg-type]


def test_psi_matches_the_hand_computed_value() -> None:
    expected, actual = np.array([50, 30, 20]), np.array([30, 30, 40])
    p, q = expected / 100, actual / 100
    by_hand = sum((qi - pi) * np.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0


def test_small_samples_use_ks_and_match_scipy() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(size=400), rng.normal(0.3, size=300)
    profile = _profile(pd.DataFrame({"x": reference}))
    [result] = compare(profile, pd.DataFrame({"x": current})).features
    expected = stats.ks_2samp(reference, current)
    assert result.test == "ks"
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.drifted == (expected.pvalue < 0.05)
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    assert result.wasserstein_norm == pytest.approx(exact)


def test_large_samples_use_normalised_wasserstein() -> None:
    rng = np.random.default_rng(4)
    reference, current = rng.lognormal(0, 0.6, 200_000), rng.lognormal(0.1, 0.6, 200_000)
    [result] = compare(
        _profile(pd.DataFrame({"x": reference})), pd.DataFrame({"x": current})
    ).features
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    assert result.test == "wasserstein_norm"
    assert result.wasserstein_norm == pytest.approx(exact, abs=0.02)
    assert result.drifted is True  # 0.157 > 0.1


def test_categorical_statistics() -> None:
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])})
    profile = _profile(reference)
    small = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 500, p=[0.2, 0.3, 0.5])})
    [chi] = compare(profile, small).features
    assert chi.test == "chi_square" and chi.drifted is True
    large = pd.DataFrame({"c": rng.choice(["a", "b", "c", "new"], 5000, p=[0.3, 0.3, 0.2, 0.2])})
    [js] = compare(profile, large).features
    counts = reference["c"].value_counts()
    p = np.array([counts["a"], counts["b"], counts["c"], 0]) / len(reference)
    q = large["c"].value_counts().reindex(["a", "b", "c", "new"]).to_numpy() / len(large)
    assert js.test == "jensen_shannon"
    assert js.statistic == pytest.approx(jensenshannon(p, q))
    assert js.drifted is True


def test_below_min_samples_is_insufficient_data_not_drift() -> None:
    profile = _profile(pd.DataFrame({"x": np.arange(1000.0)}))
    report = compare(profile, pd.DataFrame({"x": np.arange(50.0) + 1e6}), min_samples=100)
    assert report.insufficient and not report.drift and report.score is None
    assert report.features[0].drifted is None
    assert "insufficient data" in report.summary()


@pytest.mark.slow
def test_same_distribution_raises_no_drift_over_100_seeded_trials() -> None:
    false_features = false_batches = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        # 20,000 rows: the large-sample (effect size) path, at a fifth of the time of 100,000
        reference = pd.DataFrame({f"f{i}": rng.normal(size=20_000) for i in range(4)})
        current = pd.DataFrame({f"f{i}": rng.normal(size=20_000) for i in range(4)})
        report = compare(_profile(reference), current)
        false_features += len(report.drifted_features)
        false_batches += report.drift
    assert false_batches <= 1  # <= 1 % of 100 trials
    assert false_features <= 4  # <= 1 % of 400 feature tests


def test_half_the_features_shifted_by_half_a_sd_are_detected() -> None:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({f"f{i}": rng.normal(10, 2, 100_000) for i in range(8)})
    current = pd.DataFrame(
        {f"f{i}": rng.normal(10 + (1.0 if i < 4 else 0.0), 2, 100_000) for i in range(8)}
    )
    report = compare(_profile(reference), current)
    assert report.drifted_features == ["f0", "f1", "f2", "f3"]
    # each moved five thresholds (counted as SEVERITY_CAP = 3): 4 x 3 / 8 = 1.5, capped at 1
    assert report.score == 1.0 and report.drift is True


def test_the_score_weighs_drift_by_its_size() -> None:
    """#19 item 5: two strongly drifted features of eight are drift (a share of features
    scored them 0.25); two barely drifted ones are not."""
    rng = np.random.default_rng(17)
    reference = pd.DataFrame({f"f{i}": rng.normal(0, 1, 20_000) for i in range(8)})
    strong = reference.copy()
    strong[["f0", "f1"]] = rng.normal(0.73, 1, (20_000, 2))
    report = compare(_profile(reference), strong)
    assert report.drifted_features == ["f0", "f1"]
    assert report.score == pytest.approx(2 * 3 / 8) and report.drift
    weak = reference.copy()
    weak[["f0", "f1"]] = rng.normal(0.15, 1, (20_000, 2))
    barely = compare(_profile(reference), weak)
    assert barely.drifted_features == ["f0", "f1"]
    severities = [f.severity for f in barely.features if f.drifted]
    assert all(1.0 < s < 2.0 for s in severities)
    assert barely.score == pytest.approx(sum(severities) / 8) and not barely.drift


def test_a_batch_drifts_only_when_its_score_exceeds_the_threshold() -> None:
    """``drift_threshold`` is a limit the score must pass: a score exactly at it is no drift."""
    rng = np.random.default_rng(17)
    reference = pd.DataFrame({f"f{i}": rng.normal(0, 1, 20_000) for i in range(8)})
    strong = reference.copy()
    strong[["f0", "f1"]] = rng.normal(0.73, 1, (20_000, 2))
    profile = _profile(reference)
    score = compare(profile, strong).score
    assert score is not None
    assert not compare(profile, strong, threshold=score).drift
    assert compare(profile, strong, threshold=np.nextafter(score, 0.0)).drift


def test_importance_weights_are_stated_and_used() -> None:
    """#19 item 5: drift counts by the model's reliance on the feature; drift in a feature the
    model ignores scores nothing, however large."""
    rng = np.random.default_rng(8)
    reference = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    current = pd.DataFrame({"a": rng.normal(0.15, size=5000), "b": rng.normal(size=5000)})
    weights = {"a": 0.25, "b": 0.75}
    report = compare(_profile(reference), current, weights=weights)
    severity = next(f.severity for f in report.features if f.name == "a")
    assert report.weighted and report.drifted_features == ["a"]
    assert report.score == pytest.approx(0.25 * severity) and not report.drift
    assert "importance-weighted" in report.summary()
    assert compare(_profile(reference), current).drift  # equal weights: half the features
    swapped = compare(_profile(reference), current, weights={"a": 0.75, "b": 0.25})
    assert swapped.score == pytest.approx(min(1.0, 0.75 * severity)) and swapped.drift
    ignored = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(3.0, size=5000)})
    only_b = compare(_profile(reference), ignored, weights={"a": 1.0, "b": 0.0})
    assert only_b.drifted_features == ["b"] and only_b.score == 0.0 and not only_b.drift


def test_merged_partition_profiles_equal_the_profile_of_the_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"x": rng.normal(size=6000), "c": rng.choice(["u", "v", "w"], 6000)})
    base = _profile(frame.iloc[:1000])
    whole = base.partition(frame)
    merged = base.partition(frame.iloc[:2500]).merge(base.partition(frame.iloc[2500:]))
    a, b = whole.numeric_["x"], merged.numeric_["x"]
    assert a.counts == b.counts and a.n == b.n and a.minimum == b.minimum and a.maximum == b.maximum
    assert a.mean == pytest.approx(b.mean) and a.std == pytest.approx(b.std)
    assert whole.categorical_["c"] == merged.categorical_["c"]
    loaded = ReferenceProfile.load(merged.save(tmp_path / "profile.json"))
    assert loaded.to_dict() == merged.to_dict()
    with pytest.raises(ValueError, match="cannot be merged"):
        whole.merge(_profile(frame))


def test_merged_partitions_keep_a_uniform_sample_of_all_their_rows() -> None:
    """A big partition around 0 and a small one around 10 (9 to 1, merged in a chain as a
    Dask tree would): the merged reservoir is 10 % from the small one, not over-represented,
    and its distance to the rows themselves is as small as a direct sample's."""
    from scipy import stats

    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 20_000)})
    profile = ReferenceProfile().fit(reference, {"x": "numeric"})
    parts = [pd.DataFrame({"x": rng.normal(0, 1, 30_000)}) for _ in range(3)]
    parts.append(pd.DataFrame({"x": rng.normal(10, 1, 10_000)}))
    merged = profile.partition(parts[0])
    for part in parts[1:]:
        merged = merged.merge(profile.partition(part))
    sample = np.asarray(merged.numeric_["x"].sample)
    assert merged.numeric_["x"].n == 100_000 and len(sample) == 10_000
    assert (sample > 5).mean() == pytest.approx(0.10, abs=0.005)
    rows = pd.concat(parts)["x"].to_numpy()
    direct = rng.choice(rows, 10_000, replace=False)
    assert stats.wasserstein_distance(rows, sample) < 2 * stats.wasserstein_distance(rows, direct)

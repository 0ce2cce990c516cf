"""Quantizers that turn one distortion metric into K distortion levels (Wu and Lee 2023).

Both follow the scikit-learn estimator style: hyper-parameters in ``__init__``,
``fit(values)`` learns fitted attributes whose names end in ``_``, ``predict(values)``
returns levels. Level 1 is the least distorted sample (highest metric value), level K
the most distorted, for every metric (STOI, PESQ and fwSNRseg are all higher-is-better).

The fitted state is saved as plain JSON (``to_dict``/``from_dict``, ``save``/``load``),
never as a pickle, so a level index stays readable across library versions and safe
to load.

* :class:`UniformQuantizer` - equal counts by rank (the authors sort descending).
* :class:`GMMQuantizer` - ``sklearn.mixture.BayesianGaussianMixture`` on the 1-D
  values (the authors' ``n_components=5, random_state=2022, max_iter=100``), its
  components ordered by mean.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted

#: Written into every saved quantizer; bump when the layout changes.
QUANTIZER_FORMAT = "metricaug-quantizer/1"
#: The authors' settings for the GMM quantizer.
AUTHORS_N_LEVELS = 5
AUTHORS_RANDOM_STATE = 2022
AUTHORS_MAX_ITER = 100


def _as_finite_1d(values: Any, what: str) -> np.ndarray:
    """Values as a float64 vector; quantizers refuse NaN/inf (callers filter and count them)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array of metric values, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: values must be finite (leave out NaN metrics before quantizing)")
    return array


def _level_of_value(boundaries: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Level ``1 + #{j : x < boundaries[j]}`` for descending ``boundaries``: contiguous value
    intervals, level 1 on top, a value on a boundary in the less distorted level."""
    ascending = np.asarray(boundaries, dtype=np.float64)[::-1]
    above = ascending.size - np.searchsorted(ascending, x, side="right")
    return (above + 1).astype(np.int64)


def _check_n_levels(n_levels: int) -> int:
    if int(n_levels) != n_levels or n_levels < 1:
        raise ValueError(f"n_levels must be a positive integer, got {n_levels!r}")
    return int(n_levels)


class _QuantizerBase(ClusterMixin, BaseEstimator):
    """Shared plumbing: a scikit-learn estimator (``get_params``, ``set_params`` and
    ``sklearn.base.clone`` come from ``BaseEstimator``; levels are cluster labels, as
    ``ClusterMixin`` expects), JSON I/O and fit_predict."""

    #: Name used in file names, JSON and ``make_quantizer``.
    kind: str = ""

    def _check_fitted(self) -> None:
        # sklearn's NotFittedError (a ValueError and AttributeError) names the estimator
        check_is_fitted(self, "n_fit_")

    def fit_predict(self, values: Any, y: Any = None) -> np.ndarray:
        return self.fit(values).predict(values)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Hyper-parameters and fitted state as JSON-ready built-in types."""
        self._check_fitted()
        return {
            "format": QUANTIZER_FORMAT,
            "kind": self.kind,
            "params": self.get_params(),
            "fitted": self._fitted_to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "_QuantizerBase":
        if data.get("format") != QUANTIZER_FORMAT:
            raise ValueError(f"not a saved quantizer (format {data.get('format')!r}, expected {QUANTIZER_FORMAT!r})")
        if cls is _QuantizerBase:
            cls = _QUANTIZERS[data["kind"]]
        elif data.get("kind") != cls.kind:
            raise ValueError(f"saved quantizer is {data.get('kind')!r}, not {cls.kind!r}")
        quantizer = cls(**data["params"])
        quantizer._fitted_from_dict(data["fitted"])
        return quantizer

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "_QuantizerBase":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "_QuantizerBase":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def _fitted_to_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fitted_from_dict(self, fitted: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class UniformQuantizer(_QuantizerBase):
    """Equal counts by rank.

    ``fit`` sorts the values descending (ties keep their input order, so callers that
    want a key-based tie-break pass the values sorted by key) and cuts the ranking
    into ``n_levels`` runs whose sizes differ by at most one; the first
    ``n % n_levels`` levels get the extra sample, as ``numpy.array_split`` does.
    ``labels_`` holds these rank-based levels of the fitted values.

    ``boundaries_[j]`` separates level ``j + 1`` from level ``j + 2``: the midpoint
    between the lowest value of level ``j + 1`` and the highest of level ``j + 2``.
    ``predict`` assigns a value ``v`` the level ``1 + #{j : v < boundaries_[j]}``, so a
    value equal to a boundary falls in the less distorted level (the smaller number).
    For fitted values without ties across a cut, ``predict`` equals ``labels_``; tied
    values that straddle a cut all go to the less distorted level under ``predict``.
    """

    kind = "uniform"

    def __init__(self, n_levels: int = AUTHORS_N_LEVELS):
        self.n_levels = n_levels

    def fit(self, values: Any, y: Any = None) -> "UniformQuantizer":
        n_levels = _check_n_levels(self.n_levels)
        x = _as_finite_1d(values, "UniformQuantizer.fit")
        n = x.size
        if n < n_levels:
            raise ValueError(f"UniformQuantizer.fit: {n} values cannot fill {n_levels} levels")
        # Stable sort of the negated values = descending by value, ties in input order.
        order = np.argsort(-x, kind="stable")
        base, extra = divmod(n, n_levels)
        sizes = np.full(n_levels, base, dtype=np.int64)
        sizes[:extra] += 1
        ends = np.cumsum(sizes)  # rank r is in level 1 + #{ends <= r}
        starts = ends - sizes
        ranked = x[order]
        level_max = ranked[starts]
        level_min = ranked[ends - 1]
        labels = np.empty(n, dtype=np.int64)
        labels[order] = np.repeat(np.arange(1, n_levels + 1, dtype=np.int64), sizes)

        self.labels_ = labels
        self.level_sizes_ = sizes
        self.level_max_ = level_max
        self.level_min_ = level_min
        # Midpoints written as a + (b - a) / 2 so that they stay inside [b, a].
        self.boundaries_ = level_min[:-1] + (level_max[1:] - level_min[:-1]) / 2.0
        self.n_fit_ = int(n)
        return self

    def fit_predict(self, values: Any, y: Any = None) -> np.ndarray:
        """Rank-based levels of ``values`` (equal counts, ties by input order)."""
        return self.fit(values).labels_.copy()

    def predict(self, values: Any) -> np.ndarray:
        self._check_fitted()
        return _level_of_value(self.boundaries_, _as_finite_1d(values, "UniformQuantizer.predict"))

    def _fitted_to_dict(self) -> dict:
        return {
            "boundaries_": self.boundaries_.tolist(),
            "level_sizes_": self.level_sizes_.tolist(),
            "level_max_": self.level_max_.tolist(),
            "level_min_": self.level_min_.tolist(),
            "n_fit_": self.n_fit_,
        }

    def _fitted_from_dict(self, fitted: dict) -> None:
        self.boundaries_ = np.asarray(fitted["boundaries_"], dtype=np.float64)
        self.level_sizes_ = np.asarray(fitted["level_sizes_"], dtype=np.int64)
        self.level_max_ = np.asarray(fitted["level_max_"], dtype=np.float64)
        self.level_min_ = np.asarray(fitted["level_min_"], dtype=np.float64)
        self.n_fit_ = int(fitted["n_fit_"])


# Fitted attributes of BayesianGaussianMixture that its predict (and predict_proba,
# score_samples) read, stored as nested lists; JSON floats round-trip exactly.
_MIXTURE_ARRAYS = (
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "weights_",
    "mean_precision_",
    "degrees_of_freedom_",
    "mean_prior_",
)


class GMMQuantizer(_QuantizerBase):
    """Bayesian Gaussian mixture on the 1-D values; one level per component.

    ``fit`` runs ``BayesianGaussianMixture(n_components=n_levels,
    random_state=random_state, max_iter=max_iter)`` (all else sklearn's defaults, as in
    the authors' code) on ``values.reshape(-1, 1)``. Components are ordered by mean,
    highest first (ties by component index): ``component_order_[l - 1]`` is the
    component of level ``l``.

    Levels are contiguous value intervals: ``boundaries_[l - 1]`` (descending) is where the
    posteriors of the components of levels ``l`` and ``l + 1`` cross, searched between their
    means; a value goes to ``1 + #{l : value < boundaries_[l - 1]}``. Assigning by the most
    probable component instead (sklearn's ``predict``, kept as :meth:`predict_component`)
    lets a wide component own both tails, so a level could hold samples on either side of
    another level. Where two neighbours' posteriors do not cross between their means, the
    dominated level gets an empty interval (reported as an empty level).

    A mixture that has not converged after ``max_iter`` iterations is kept (the
    authors' behaviour); ``converged_`` records it and sklearn's warning is silenced.
    A component may end up with few or no samples; callers report small levels.
    """

    kind = "gmm"

    def __init__(
        self,
        n_levels: int = AUTHORS_N_LEVELS,
        random_state: int | None = AUTHORS_RANDOM_STATE,
        max_iter: int = AUTHORS_MAX_ITER,
    ):
        self.n_levels = n_levels
        self.random_state = random_state
        self.max_iter = max_iter

    def _new_mixture(self):
        from sklearn.mixture import BayesianGaussianMixture

        return BayesianGaussianMixture(
            n_components=_check_n_levels(self.n_levels),
            random_state=self.random_state,
            max_iter=int(self.max_iter),
        )

    def fit(self, values: Any, y: Any = None) -> "GMMQuantizer":
        from sklearn.exceptions import ConvergenceWarning

        n_levels = _check_n_levels(self.n_levels)
        x = _as_finite_1d(values, "GMMQuantizer.fit")
        if x.size < n_levels:
            raise ValueError(f"GMMQuantizer.fit: {x.size} values cannot fit {n_levels} components")
        mixture = self._new_mixture()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mixture.fit(x.reshape(-1, 1))
        self._set_mixture(mixture)
        self.n_fit_ = int(x.size)
        return self

    def _set_mixture(self, mixture) -> None:
        self.mixture_ = mixture
        means = np.asarray(mixture.means_, dtype=np.float64).reshape(-1)
        # Highest mean first; lexsort's last key is primary, so ties go by index.
        order = np.lexsort((np.arange(means.size), -means))
        level_of_component = np.empty(means.size, dtype=np.int64)
        level_of_component[order] = np.arange(1, means.size + 1)
        self.component_order_ = order.astype(np.int64)
        self.level_of_component_ = level_of_component
        self.level_means_ = means[order]
        self.level_stds_ = np.sqrt(np.asarray(mixture.covariances_, dtype=np.float64).reshape(-1))[order]
        self.level_weights_ = np.asarray(mixture.weights_, dtype=np.float64)[order]
        self.converged_ = bool(mixture.converged_)
        self.n_iter_ = int(mixture.n_iter_)
        self.boundaries_ = self._posterior_crossings(mixture, order)

    @staticmethod
    def _posterior_crossings(mixture, order: np.ndarray) -> np.ndarray:
        """For each pair of adjacent levels, the value between their means where the
        posterior of the upper level's component stops exceeding the lower one's
        (bisection on the log-posterior difference), made non-increasing."""
        means = np.asarray(mixture.means_, dtype=np.float64).reshape(-1)

        def log_ratio(x: float, upper: int, lower: int) -> float:
            # sklearn's own posterior (predict_proba), floored so that log stays finite
            proba = mixture.predict_proba(np.array([[x]]))[0]
            return float(np.log(max(proba[upper], 1e-300)) - np.log(max(proba[lower], 1e-300)))

        boundaries = []
        for upper, lower in zip(order[:-1], order[1:]):
            lo, hi = means[lower], means[upper]
            if not hi > lo:
                boundaries.append(hi)
                continue
            f_lo, f_hi = log_ratio(lo, upper, lower), log_ratio(hi, upper, lower)
            if f_lo >= 0:  # the upper component wins everywhere between: the lower level starts below
                boundaries.append(lo)
            elif f_hi <= 0:  # the lower component wins everywhere between: the upper level starts above
                boundaries.append(hi)
            else:
                for _ in range(60):  # ~1e-18 of the interval: exact to float precision
                    mid = lo + (hi - lo) / 2.0
                    if mid in (lo, hi):
                        break
                    if log_ratio(mid, upper, lower) >= 0:
                        hi = mid
                    else:
                        lo = mid
                boundaries.append(hi)
        b = np.asarray(boundaries, dtype=np.float64)
        return np.minimum.accumulate(b) if b.size else b

    def predict_component(self, values: Any) -> np.ndarray:
        """The mixture's own component index (sklearn's ``predict``)."""
        self._check_fitted()
        x = _as_finite_1d(values, "GMMQuantizer.predict")
        if x.size == 0:
            return np.empty(0, dtype=np.int64)
        return np.asarray(self.mixture_.predict(x.reshape(-1, 1)), dtype=np.int64)

    def predict(self, values: Any) -> np.ndarray:
        self._check_fitted()
        return _level_of_value(self.boundaries_, _as_finite_1d(values, "GMMQuantizer.predict"))

    def _fitted_to_dict(self) -> dict:
        mixture = self.mixture_
        state: dict[str, Any] = {name: np.asarray(getattr(mixture, name)).tolist() for name in _MIXTURE_ARRAYS}
        concentration = mixture.weight_concentration_
        if isinstance(concentration, tuple):  # dirichlet_process: (alpha, beta) per component
            state["weight_concentration_"] = [np.asarray(part).tolist() for part in concentration]
        else:
            state["weight_concentration_"] = np.asarray(concentration).tolist()
        state["weight_concentration_prior_type"] = mixture.weight_concentration_prior_type
        state["covariance_type"] = mixture.covariance_type
        state["lower_bound_"] = float(mixture.lower_bound_)
        state["n_features_in_"] = int(mixture.n_features_in_)
        import sklearn

        return {
            "boundaries_": self.boundaries_.tolist(),  # recomputed from the mixture on load
            "component_order_": self.component_order_.tolist(),
            "converged_": self.converged_,
            "level_means_": self.level_means_.tolist(),
            "level_stds_": self.level_stds_.tolist(),
            "level_weights_": self.level_weights_.tolist(),
            "mixture_": state,
            "n_fit_": self.n_fit_,
            "n_iter_": self.n_iter_,
            "sklearn_version": sklearn.__version__,
        }

    def _fitted_from_dict(self, fitted: dict) -> None:
        state = fitted["mixture_"]
        mixture = self._new_mixture()
        if state["weight_concentration_prior_type"] != mixture.weight_concentration_prior_type or (
            state["covariance_type"] != mixture.covariance_type
        ):
            raise ValueError("saved mixture uses settings this quantizer does not build")
        # Rebuild the estimator from its fitted attributes so that prediction runs
        # sklearn's own code on exactly the saved numbers.
        for name in _MIXTURE_ARRAYS:
            setattr(mixture, name, np.asarray(state[name], dtype=np.float64))
        concentration = state["weight_concentration_"]
        if mixture.weight_concentration_prior_type == "dirichlet_process":
            mixture.weight_concentration_ = tuple(np.asarray(part, dtype=np.float64) for part in concentration)
        else:
            mixture.weight_concentration_ = np.asarray(concentration, dtype=np.float64)
        mixture.lower_bound_ = float(state["lower_bound_"])
        mixture.n_features_in_ = int(state["n_features_in_"])
        mixture.converged_ = bool(fitted["converged_"])
        mixture.n_iter_ = int(fitted["n_iter_"])
        self._set_mixture(mixture)
        self.n_fit_ = int(fitted["n_fit_"])


_QUANTIZERS: dict[str, type[_QuantizerBase]] = {
    UniformQuantizer.kind: UniformQuantizer,
    GMMQuantizer.kind: GMMQuantizer,
}
#: Quantizer names accepted by :func:`make_quantizer` (and ``prep score --quant``).
QUANTIZER_NAMES: tuple[str, ...] = tuple(sorted(_QUANTIZERS))


def make_quantizer(
    name: str,
    n_levels: int = AUTHORS_N_LEVELS,
    random_state: int | None = AUTHORS_RANDOM_STATE,
    max_iter: int = AUTHORS_MAX_ITER,
) -> _QuantizerBase:
    """An unfitted quantizer by name: ``"uniform"`` or ``"gmm"``."""
    if name == "uniform":
        return UniformQuantizer(n_levels=n_levels)
    if name == "gmm":
        return GMMQuantizer(n_levels=n_levels, random_state=random_state, max_iter=max_iter)
    raise ValueError(f"unknown quantizer {name!r}; expected one of {', '.join(QUANTIZER_NAMES)}")


def quantizer_from_dict(data: dict) -> _QuantizerBase:
    """Rebuild any saved quantizer (the kind is read from the data)."""
    return _QuantizerBase.from_dict(data)


def load_quantizer(path: str | Path) -> _QuantizerBase:
    return _QuantizerBase.load(path)

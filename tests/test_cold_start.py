"""Fair evaluation of cold products: on-sale candidates, cold views, popularity before a moment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from m6rec_lib.cold_start import CatalogueTimeline, blend, standardise
from m6rec_lib.data import DataError, EvalSet

# items 1, 2 sold in year 1; items 3, 4 new in year 2 (3 from February, 4 from April); item 5 never sold
LINES = pd.DataFrame({
    "item": [1, 2, 1, 3, 3, 1, 4],
    "invoice_date": pd.to_datetime(["2010-03-01", "2010-06-01", "2011-01-05", "2011-02-01", "2011-02-20",
                                    "2011-03-01", "2011-04-01"]),
})
IS_COLD = np.array([False, False, False, True, True, True])
CUT = "2010-12-01"


def _eval_set() -> EvalSet:
    return EvalSet(users=np.array([0, 1, 2]), targets=[np.array([3, 1]), np.array([1]), np.array([4, -1])],
                   history=sp.csr_matrix((3, 6)), sequences=[np.array([1]), np.array([2]), np.array([1, 2])],
                   moments=pd.to_datetime(["2011-03-15", "2011-03-20", "2011-05-01"]).to_numpy(), name="test")


def test_on_sale_and_the_cold_view():
    tl = CatalogueTimeline.from_lines(LINES, IS_COLD, CUT)
    es = _eval_set()
    on = tl.on_sale(es)
    assert on.shape == (3, 6) and not on[:, 0].any() and not on[:, 5].any()     # padding, never sold
    assert on[0].tolist() == [False, True, True, True, False, False]             # item 4 comes in April
    assert on[2, 4]
    cold = tl.cold_view(es)
    assert cold.users.tolist() == [0, 2] and [t.tolist() for t in cold.targets] == [[3], [4]]


def test_only_keeps_the_candidates_and_shows_the_trap():
    tl = CatalogueTimeline.from_lines(LINES, IS_COLD, CUT)
    es = _eval_set()
    S = tl.only(np.ones((3, 6)), es)
    assert np.isfinite(S[0]).tolist() == [False, False, False, True, False, False]
    trap = tl.only(np.ones((3, 6)), es, available=False)                          # every cold product
    assert np.isfinite(trap[0]).tolist() == [False, False, False, True, True, True]
    known = tl.only(np.ones((3, 6)), es, cold=False)
    assert np.isfinite(known[1]).tolist() == [False, True, True, True, False, False]
    with pytest.raises(ValueError, match="scores must be"):
        tl.only(np.ones((3, 5)), es)


def test_popularity_counts_only_lines_before_each_moment():
    tl = CatalogueTimeline.from_lines(LINES, IS_COLD, CUT)
    pop = tl.popularity_before(_eval_set())
    assert pop[0].tolist() == [0, 2, 0, 2, 0, 0]        # year-2 lines before 2011-03-15
    assert pop[2].tolist() == [0, 2, 0, 2, 1, 0]      # item 4's April line counts in May
    with pytest.raises(DataError, match="item"):
        CatalogueTimeline.from_lines(LINES.drop(columns="item"), IS_COLD, CUT)


def test_standardise_and_blend_keep_minus_infinity():
    S = np.array([[1.0, 2.0, 3.0, -np.inf], [5.0, 5.0, -np.inf, 5.0]])
    Z = standardise(S)
    assert np.allclose(Z[0, :3], [-1.2247, 0, 1.2247], atol=1e-3) and Z[0, 3] == -np.inf
    assert np.allclose(Z[1, [0, 1, 3]], 0) and Z[1, 2] == -np.inf
    T = np.array([[3.0, 2.0, 1.0, -np.inf], [-np.inf, 1.0, 2.0, 3.0]])
    B = blend(S, T, 1.0)
    assert np.allclose(B[0, :3], 0, atol=1e-6) and B[0, 3] == -np.inf          # opposite orders cancel
    assert B[1, 0] == pytest.approx(0.0) and B[1, 2] == -np.inf                # a missing text score adds 0


def test_few_shot_plot_draws_the_curve_and_its_lines():
    from m6rec_lib.cold_start import plot_few_shot

    curve = pd.DataFrame({"value": [0.04, 0.06], "diff": [-0.1, -0.08], "low": [-0.12, -0.1], "high": [-0.08, -0.05]},
                         index=pd.Index([0, "all"]))
    fig = plot_few_shot(curve, {"text": 0.14, "popularity": 0.12})
    assert len(fig.axes[0].lines) >= 2 and fig.axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="lacks"):
        plot_few_shot(curve.drop(columns="low"), {})

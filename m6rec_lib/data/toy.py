"""Toy worlds with known ground truth: the seed article's 3x3 example and a seeded generator.

Real data never tells you the "true" preference of a customer, so a method can only be judged by
held-out metrics. In a toy world the truth is known: every user has a true score for every item,
purchases are drawn from the true softmax ``P(i|u) = exp(q(u, i)) / sum_j exp(q(u, j))``, and an
estimate can be compared with the truth directly. Both worlds here are small enough to print.

- :func:`seed_article_example` is the 3 users x 3 items example of the article this course starts
  from, completed so that it can be computed with (see :class:`SeedArticleExample` for which numbers
  are the article's and which were chosen here).
- :func:`make_toy_world` draws a random world of any size from a seed, with its purchases laid out
  like the cleaned Online Retail lines, so unit tests of other modules can run on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# the seed article's example

ARTICLE_SCORES_USER1: tuple[float, float, float] = (0.2, 0.3, 0.5)
"""The article's scores ``q(1, i)`` of user 1 for items 1, 2, 3."""

ARTICLE_CLAIMED_PROBABILITIES_USER1: tuple[float, float, float] = (0.26, 0.39, 0.35)
"""The softmax probabilities the article states for user 1. They are wrong: the softmax of
(0.2, 0.3, 0.5) is about (0.289, 0.320, 0.391), and the ranking they imply (item 2 first) is not
the ranking of the scores (item 3 first)."""


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (any shape -> same shape, sums to 1)."""
    scores = np.asarray(scores, dtype=float)
    shifted = scores - scores.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class SeedArticleExample:
    """The seed article's 3x3 example (users 1..3 x items 1..3), completed to be computable.

    From the article:
      - 3 users, 3 items, a binary user-item interaction matrix ``R``;
      - user 1's scores ``q = (0.2, 0.3, 0.5)`` for items 1..3 (``scores[0]``);
      - the probabilities it claims for user 1, ``(0.26, 0.39, 0.35)``
        (``claimed_probabilities_user1``), which are not the softmax of those scores;
      - the statement that it recommends the item with the highest score, although user 1 already
        has it.

    Chosen here to complete the example (the article gives no such numbers):
      - the entries of ``R``: user 1 bought item 3, user 2 item 1, user 3 items 1 and 2. Item 3 is
        user 1's top-scored item, so "it recommends items the user already has" holds;
      - the factor matrices ``P`` (users x 2) and ``Q`` (items x 2). ``P[0] = (1, 0)`` and the
        first column of ``Q`` is (0.2, 0.3, 0.5), so that row 1 of ``P @ Q.T`` is exactly the
        article's ``q``; the other rows are simple round numbers.

    Indices are 0-based in the arrays: ``scores[0, 2]`` is user 1's score for item 3.
    """

    R: np.ndarray
    """(3, 3) int 0/1: ``R[u, i] = 1`` when user u+1 has bought item i+1 (chosen here)."""
    P: np.ndarray
    """(3, 2) user factors (chosen here)."""
    Q: np.ndarray
    """(3, 2) item factors (chosen here; first column = the article's q of user 1)."""
    claimed_probabilities_user1: np.ndarray
    """(3,) the article's claimed softmax probabilities of user 1: (0.26, 0.39, 0.35)."""
    users: tuple[str, ...] = ("user 1", "user 2", "user 3")
    items: tuple[str, ...] = ("item 1", "item 2", "item 3")
    provenance: dict[str, str] = field(
        default_factory=lambda: {
            "scores[0]": "article",
            "claimed_probabilities_user1": "article (wrong)",
            "R": "chosen here (user 1 already has item 3, as the article's critique implies)",
            "P, Q": "chosen here so that (P @ Q.T)[0] equals the article's scores",
            "scores[1:]": "chosen here (follow from P and Q)",
        }
    )

    @property
    def scores(self) -> np.ndarray:
        """(3, 3) score matrix ``q(u, i) = P[u] . Q[i]``; row 0 is the article's (0.2, 0.3, 0.5)."""
        return self.P @ self.Q.T

    def probabilities(self) -> np.ndarray:
        """(3, 3) the correct softmax ``P(i|u)`` of every row of :attr:`scores`."""
        return softmax(self.scores, axis=1)

    def frame(self) -> pd.DataFrame:
        """A readable table: R, scores and correct probabilities side by side, one row per user."""
        cols = {}
        mats = (("bought", self.R), ("score", self.scores), ("P(i|u)", self.probabilities()))
        for name, mat in mats:
            for j, item in enumerate(self.items):
                cols[(name, item)] = mat[:, j]
        return pd.DataFrame(cols, index=list(self.users))


def seed_article_example() -> SeedArticleExample:
    """The seed article's 3x3 example; see :class:`SeedArticleExample` for what is whose."""
    R = np.array([[0, 0, 1], [1, 0, 0], [1, 1, 0]], dtype=np.int64)
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 1.0]])
    Q = np.array([[ARTICLE_SCORES_USER1[0], 0.6], [ARTICLE_SCORES_USER1[1], 0.1],
                  [ARTICLE_SCORES_USER1[2], 0.3]])  # fmt: skip
    return SeedArticleExample(
        R=R, P=P, Q=Q, claimed_probabilities_user1=np.array(ARTICLE_CLAIMED_PROBABILITIES_USER1)
    )


# --------------------------------------------------------------------------------------------
# a random toy world

LINE_COLUMNS = (
    "customer_id", "stock_code", "description", "invoice", "invoice_date", "quantity", "price",
    "country", "source", "line_no",
)  # fmt: skip
"""The columns of the toy purchase lines: those of the cleaned Online Retail lines
(``m6rec_lib.data.clean_transactions``), with ``source = "toy_world"`` and ``line_no`` the row
number."""

_COLOURS = (
    "RED", "BLUE", "PINK", "GREEN", "WHITE", "IVORY", "BLACK", "GOLD", "SILVER", "YELLOW",
    "PURPLE", "ORANGE",
)  # fmt: skip
_THINGS = (
    "HEART MUG", "CAKE STAND", "PAPER NAPKINS", "LANTERN", "TEA TOWEL", "LUNCH BAG", "PHOTO FRAME",
    "CANDLE HOLDER", "JAM JAR", "DOORSTOP", "CHARM BRACELET", "WATER BOTTLE", "GIFT WRAP",
    "BIRD ORNAMENT", "ALARM CLOCK", "PICNIC BASKET", "CUSHION COVER", "PARTY BUNTING",
    "BAKING SET", "STORAGE TIN",
)  # fmt: skip
_COUNTRIES = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands")
_COUNTRY_P = (0.7, 0.09, 0.08, 0.05, 0.04, 0.04)


@dataclass(frozen=True)
class ToyWorld:
    """A random world with known truth. Users are rows ``u = 0..n_users-1``, items columns
    ``i = 0..n_items-1`` (these are *not* the course's item IDs: map ``stock_codes`` through an
    ``ItemIndex`` for those).

    Truth: ``true_scores = user_factors @ item_factors.T + item_bias`` (n_users, n_items) and
    ``true_probabilities = softmax(true_scores / temperature)`` along items; every purchase is a
    draw from a user's row of ``true_probabilities``.

    ``lines`` holds the sampled purchases in the cleaned-lines layout (:data:`LINE_COLUMNS`): one
    line per (invoice, item) with ``quantity`` = how many of the basket's draws hit that item.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    true_scores: np.ndarray
    true_probabilities: np.ndarray
    customer_ids: np.ndarray
    """(n_users,) int64: the customer ID of row u."""
    stock_codes: np.ndarray
    """(n_items,) str: the stock code of column i."""
    descriptions: np.ndarray
    """(n_items,) str: the product text of column i (unique)."""
    lines: pd.DataFrame
    temperature: float
    seed: int

    @property
    def n_users(self) -> int:
        return self.true_scores.shape[0]

    @property
    def n_items(self) -> int:
        return self.true_scores.shape[1]

    def draw_counts(self) -> np.ndarray:
        """(n_users, n_items) int: total quantity (= number of draws) per user and item."""
        row = pd.Index(self.customer_ids).get_indexer(self.lines["customer_id"])
        col = pd.Index(self.stock_codes).get_indexer(self.lines["stock_code"])
        counts = np.zeros((self.n_users, self.n_items), dtype=np.int64)
        np.add.at(counts, (row, col), self.lines["quantity"].to_numpy())
        return counts

    def items_frame(self) -> pd.DataFrame:
        """One row per item: ``stock_code``, ``description``, ``item_bias``."""
        return pd.DataFrame(
            {"stock_code": self.stock_codes, "description": self.descriptions,
             "item_bias": self.item_bias}  # fmt: skip
        )


def _descriptions(n_items: int, rng: np.random.Generator) -> list[str]:
    combos = [f"{c} {t}" for c in _COLOURS for t in _THINGS]
    order = rng.permutation(len(combos))
    out = []
    for k in range(n_items):
        base = combos[order[k % len(combos)]]
        out.append(base if k < len(combos) else f"{base} NO. {k // len(combos) + 1}")
    return out


def make_toy_world(
    n_users: int = 20,
    n_items: int = 12,
    n_factors: int = 3,
    seed: int = 0,
    *,
    baskets_per_user: float = 3.0,
    draws_per_basket: float = 4.0,
    temperature: float = 1.0,
    popularity: float = 1.0,
    start: str = "2010-12-01",
    end: str = "2011-12-01",
) -> ToyWorld:
    """Draw a toy world: true latent preferences, the true softmax, and sampled purchase lines.

    Parameters
    ----------
    n_users, n_items, n_factors
        Sizes; scores are ``user_factors (n_users, n_factors) @ item_factors.T + item_bias``,
        factors drawn N(0, 1/sqrt(n_factors)) so that scores have unit variance.
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same world.
    baskets_per_user, draws_per_basket
        Means of ``1 + Poisson(mean - 1)``: every user has at least one basket, every basket at
        least one draw.
    temperature
        Softmax temperature: low = each user sticks to their favourites, high = near uniform.
    popularity
        Standard deviation of the item bias (a long tail of popular items when > 0).
    start, end
        Invoice dates are drawn uniformly between these days, at shop hours (08:00-18:00).
    """
    for label, value in (("n_users", n_users), ("n_items", n_items), ("n_factors", n_factors)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if baskets_per_user < 1 or draws_per_basket < 1:
        raise ValueError("baskets_per_user and draws_per_basket are means of at least 1")
    if temperature <= 0 or popularity < 0:
        raise ValueError(
            f"need temperature > 0 and popularity >= 0, got {temperature} and {popularity}"
        )
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t1 <= t0:
        raise ValueError(f"end ({end}) must come after start ({start})")

    rng = np.random.default_rng(seed)
    scale = n_factors ** -0.25  # each factor N(0, scale^2): a dot product has variance 1
    user_factors = rng.normal(0.0, scale, size=(n_users, n_factors))
    item_factors = rng.normal(0.0, scale, size=(n_items, n_factors))
    item_bias = rng.normal(0.0, popularity, size=n_items) if popularity > 0 else np.zeros(n_items)
    true_scores = user_factors @ item_factors.T + item_bias
    true_probabilities = softmax(true_scores / temperature, axis=1)

    width = max(4, len(str(n_items)))
    stock_codes = np.array([f"TOY{i + 1:0{width}d}" for i in range(n_items)], dtype=object)
    descriptions = np.array(_descriptions(n_items, rng), dtype=object)
    prices = np.round(rng.lognormal(mean=1.0, sigma=0.6, size=n_items), 2).clip(0.1)
    customer_ids = np.arange(12346, 12346 + n_users, dtype=np.int64)
    countries = rng.choice(len(_COUNTRIES), size=n_users, p=_COUNTRY_P)

    n_days = max(1, (t1.normalize() - t0.normalize()).days)
    baskets = []  # (time, user, item counts)
    for u in range(n_users):
        for _ in range(1 + rng.poisson(baskets_per_user - 1)):
            minutes = int(rng.integers(8 * 60, 18 * 60))
            when = t0.normalize() + pd.Timedelta(days=int(rng.integers(n_days)), minutes=minutes)
            draws = 1 + rng.poisson(draws_per_basket - 1)
            baskets.append((when, u, rng.multinomial(draws, true_probabilities[u])))
    baskets.sort(key=lambda b: (b[0], b[1]))

    rows = []
    for k, (when, u, counts) in enumerate(baskets):
        invoice = str(500000 + k)
        for i in np.flatnonzero(counts):
            rows.append((customer_ids[u], stock_codes[i], descriptions[i], invoice, when,
                         int(counts[i]), prices[i], _COUNTRIES[countries[u]], "toy_world",
                         len(rows)))  # fmt: skip
    lines = pd.DataFrame(rows, columns=list(LINE_COLUMNS))
    lines = lines.astype(
        {"customer_id": "int64", "stock_code": "str", "description": "str", "invoice": "str",
         "invoice_date": "datetime64[ns]", "quantity": "int64", "price": "float64",
         "country": "str", "source": "category", "line_no": "int64"}  # fmt: skip
    )
    lines = lines.sort_values(["invoice_date", "invoice", "stock_code"], kind="stable")
    return ToyWorld(
        user_factors=user_factors,
        item_factors=item_factors,
        item_bias=item_bias,
        true_scores=true_scores,
        true_probabilities=true_probabilities,
        customer_ids=customer_ids,
        stock_codes=stock_codes,
        descriptions=descriptions,
        lines=lines.reset_index(drop=True),
        temperature=float(temperature),
        seed=int(seed),
    )

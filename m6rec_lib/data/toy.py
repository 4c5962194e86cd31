"""Toy worlds with known ground truth: the seed article's 3x3 example and a seeded generator.

Real data never tells you the "true" preference of a customer, so a method can only be judged by
held-out metrics. In a toy world the truth is known: every user has a true score for every item,
purchases are drawn from the true softmax ``P(i|u) = exp(q(i, u)) / sum_j exp(q(j, u))``, and an
estimate can be compared with the truth directly. Both worlds here are small enough to print.

- :func:`seed_article_example` is the worked example of the article this course starts from: an
  unsigned Chinese-language blog post introducing M6-Rec (section 4.3 of the post), with every number
  exactly as printed there, the probabilities and recommendation lists it claims, and functions that
  compute the correct values and name each mistake.
- :func:`make_toy_world` draws a random world of any size from a seed, with its purchases laid out
  like the cleaned Online Retail lines, so unit tests of other modules can run on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# the seed article's example, exactly as printed

SEED_INTERACTIONS: tuple[tuple[int, ...], ...] = ((1, 0, 1), (0, 1, 0), (1, 1, 0))
"""The post's interaction matrix: rows users 1..3, columns items 1..3, 1 = the user has the item."""

SEED_SCORES: tuple[tuple[float, ...], ...] = ((0.2, 0.3, 0.5), (0.4, 0.6, 0.7), (0.1, 0.2, 0.9))
"""The post's user x item table. It calls these the trained "latent representations" of users and
items, but lays them out as one number per (user, item) and uses them as the scores ``q(i, u)``."""

SEED_CLAIMED_PROBABILITIES: tuple[tuple[float, ...], ...] = (
    (0.26, 0.39, 0.35), (0.33, 0.47, 0.20), (0.19, 0.38, 0.44))
"""The probabilities ``P(i|u)`` the post states, row = user, column = item (two decimals, as printed)."""

SEED_CLAIMED_DENOMINATORS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 0), (1, 0), (2, 0)),   # user 1: e^0.2 + e^0.4 + e^0.1, the item-1 column, not user 1's row
    ((1, 0), (1, 1), (1, 2)),   # user 2: its own row
    ((2, 0), (2, 1), (2, 2)),   # user 3: its own row
)
"""For every user, the (user, item) cells (0-based) whose ``e^q`` the post adds up in the denominator."""

SEED_CLAIMED_RANKINGS: tuple[tuple[int, ...], ...] = ((3, 1, 2), (2, 3, 1), (3, 2, 1))
"""The post's recommendation lists, best first, items numbered 1..3 as in the post:
user 1: item 3 (0.35) > item 1 (0.26) > item 2 (0.39); user 2: item 2 (0.47) > item 3 (0.20) >
item 1 (0.33); user 3: item 3 (0.44) > item 2 (0.38) > item 1 (0.19)."""

SEED_MNIST_CLAIMED_LOSSES: tuple[float, float] = (1.9534, 1.4956)
"""The first and the last training loss the post's MNIST code (its section 5.2) claims to print over
its 10 epochs. That code cannot run (see :data:`SEED_MNIST_SHAPES`), so no run produced them."""

SEED_MNIST_SHAPES: dict[str, object] = {
    "vocab_size": 10, "embedding_dim": 128, "n_classes": 10, "batch_size": 64,
    "image_shape": (64, 1, 28, 28), "epochs": 10,
}
"""The sizes of the post's MNIST code: ``nn.Embedding(10, 128)`` then ``nn.Linear(128, 10)``, fed
batches of 64 float images of shape (64, 1, 28, 28), with ``CrossEntropyLoss`` against 64 labels."""


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (any shape -> same shape, sums to 1)."""
    scores = np.asarray(scores, dtype=float)
    shifted = scores - scores.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class SeedArticleExample:
    """The seed article's worked example (users 1..3 x items 1..3), every number as printed.

    Arrays are 0-based: ``scores[0, 2]`` is user 1's score for item 3; :attr:`claimed_rankings` keep
    the post's 1-based item numbers. Everything the post states is a field; everything computed
    from it is a method, so that the correct values are never typed in.
    """

    R: np.ndarray
    """(3, 3) int 0/1 interaction matrix: ``R[u, i] = 1`` when user u+1 has item i+1."""
    scores: np.ndarray
    """(3, 3) float scores ``q(i, u)`` (row u, column i)."""
    claimed_probabilities: np.ndarray
    """(3, 3) the probabilities the post states."""
    claimed_denominators: tuple[tuple[tuple[int, int], ...], ...]
    """Per user, the cells the post sums in its softmax denominator."""
    claimed_rankings: np.ndarray
    """(3, 3) int: the post's recommendation list of each user, best first, items numbered 1..3."""
    users: tuple[str, ...] = ("user 1", "user 2", "user 3")
    items: tuple[str, ...] = ("item 1", "item 2", "item 3")

    # ---- what the numbers should have been
    def probabilities(self) -> np.ndarray:
        """(3, 3) the correct ``P(i|u)``: the softmax of each user's row of :attr:`scores`."""
        return softmax(self.scores, axis=1)

    def ranking(self, masked: bool = False) -> np.ndarray:
        """(3, 3) int: each user's items by correct probability, best first, numbered 1..3.

        ``masked=True`` leaves out the items the user already has (their places are filled with 0).
        """
        p = self.masked_probabilities() if masked else self.probabilities()
        order = np.argsort(-p, axis=1, kind="stable") + 1
        if masked:
            order = np.where(np.take_along_axis(p, order - 1, axis=1) > 0, order, 0)
        return order

    def masked_probabilities(self) -> np.ndarray:
        """(3, 3) ``P(i|u)`` with the items each user has set to probability 0 (score -inf) and the
        rest renormalised: what a recommendation of *new* items should use."""
        masked = np.where(self.R == 1, -np.inf, self.scores)
        return softmax(masked, axis=1)

    # ---- what the post computed
    def claimed_denominator_values(self) -> np.ndarray:
        """(3,) the denominators as printed: the sum of ``e^q`` over the cells the post chose."""
        return np.array([sum(np.exp(self.scores[u, i]) for u, i in cells)
                         for cells in self.claimed_denominators])

    def as_printed(self) -> np.ndarray:
        """(3, 3) ``e^{q(i,u)}`` over the post's own denominators: the arithmetic the post wrote
        down, carried out. Row 1 differs from the correct softmax (wrong denominator); no row
        equals the stated probabilities of user 1 or user 3."""
        return np.exp(self.scores) / self.claimed_denominator_values()[:, None]

    def wrong_denominators(self) -> list[int]:
        """0-based users whose printed denominator is not the sum over their own row."""
        return [u for u, cells in enumerate(self.claimed_denominators)
                if sorted(cells) != [(u, i) for i in range(self.scores.shape[1])]]

    def ranking_contradictions(self) -> pd.DataFrame:
        """Every pair in a post's list where the item placed higher has the *lower* claimed probability.

        Columns: ``user``, ``placed higher`` / ``its claimed P``, ``placed lower`` / ``its claimed P``.
        """
        rows = []
        for u, order in enumerate(self.claimed_rankings):
            for a in range(len(order)):
                for b in range(a + 1, len(order)):
                    hi, lo = int(order[a]), int(order[b])
                    p_hi, p_lo = self.claimed_probabilities[u, hi - 1], self.claimed_probabilities[u, lo - 1]
                    if p_hi < p_lo:
                        rows.append({"user": self.users[u], "placed higher": self.items[hi - 1],
                                     "its claimed P": p_hi, "placed lower": self.items[lo - 1],
                                     "their claimed P": p_lo})
        return pd.DataFrame(rows, columns=["user", "placed higher", "its claimed P", "placed lower",
                                           "their claimed P"])

    def owned_in_claimed_lists(self) -> pd.DataFrame:
        """For every user: the post's list, and which of its items the user already has."""
        rows = []
        for u, order in enumerate(self.claimed_rankings):
            owned = [int(i) for i in order if self.R[u, int(i) - 1] == 1]
            rows.append({"user": self.users[u],
                         "post's list": " > ".join(f"item {int(i)}" for i in order),
                         "already has": ", ".join(f"item {i}" for i in owned) or "none",
                         "owned at rank 1": bool(self.R[u, int(order[0]) - 1]),
                         "new items in the list": int(len(order) - len(owned))})
        return pd.DataFrame(rows).set_index("user")

    def errata(self) -> pd.DataFrame:
        """One row per (user, item): the post's claim, its arithmetic carried out, the correct value.

        Columns ``score``, ``has it``, ``claimed P``, ``post's formula``, ``correct P``,
        ``claimed - correct``, ``correct P, owned masked``.
        """
        correct, printed, masked = self.probabilities(), self.as_printed(), self.masked_probabilities()
        rows = []
        for u in range(self.scores.shape[0]):
            for i in range(self.scores.shape[1]):
                rows.append({"user": self.users[u], "item": self.items[i],
                             "score": self.scores[u, i], "has it": bool(self.R[u, i]),
                             "claimed P": self.claimed_probabilities[u, i],
                             "post's formula": printed[u, i], "correct P": correct[u, i],
                             "claimed - correct": self.claimed_probabilities[u, i] - correct[u, i],
                             "correct P, owned masked": masked[u, i]})
        return pd.DataFrame(rows).set_index(["user", "item"])

    def frame(self) -> pd.DataFrame:
        """A readable table: the interactions and the scores side by side, one row per user."""
        cols = {}
        for name, mat in (("has it", self.R), ("score q(i, u)", self.scores)):
            for j, item in enumerate(self.items):
                cols[(name, item)] = mat[:, j]
        return pd.DataFrame(cols, index=list(self.users))


def seed_article_example() -> SeedArticleExample:
    """The seed article's 3x3 example, exactly as printed; see :class:`SeedArticleExample`."""
    return SeedArticleExample(
        R=np.array(SEED_INTERACTIONS, dtype=np.int64),
        scores=np.array(SEED_SCORES, dtype=float),
        claimed_probabilities=np.array(SEED_CLAIMED_PROBABILITIES, dtype=float),
        claimed_denominators=SEED_CLAIMED_DENOMINATORS,
        claimed_rankings=np.array(SEED_CLAIMED_RANKINGS, dtype=np.int64),
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

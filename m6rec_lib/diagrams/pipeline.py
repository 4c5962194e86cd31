"""The full recommender of notebook 11: retrieval, the text path, ranking, the blend, explanation."""

from __future__ import annotations

from matplotlib.figure import Figure

from . import arrow, box, canvas, finish

__all__ = ["full_recommender", "blind_choices"]


def full_recommender() -> Figure:
    """One request, left to right: the customer's history feeds two candidate paths (ID retrieval of
    products from the training period, and every new product on sale, scored from its text), the
    rankers score the candidates, one blend orders them, and each product gets an explanation."""
    fig, ax = canvas(12.5, 4.6, title="recommend(customer, k): one request through the capstone")
    box(ax, 0.2, 1.8, 1.7, 1.0, "customer\nhistory\n(purchases before now)", "input", fontsize=8)
    # the ID path
    box(ax, 2.6, 3.0, 2.3, 1.0, "retrieval\ntwo-tower: top N\n+ own past products", "model", fontsize=8)
    box(ax, 5.5, 3.0, 2.4, 1.0, "ID rankers\nEASE, SASRec, two-tower\n(z-scored, weighted)", "model", fontsize=8)
    # the text path
    box(ax, 2.6, 0.5, 2.3, 1.1, "new products on sale\n(first sold after\ntraining, before now)", "accent", fontsize=8)
    box(ax, 5.5, 0.5, 2.4, 1.1, "text path\npretrained text model\n(+ sales so far)", "accent", fontsize=8)
    # blend and output
    box(ax, 8.5, 1.6, 1.8, 1.4, "blend\nweights, new-product\noffset, repeat term", "task", fontsize=8)
    box(ax, 10.8, 1.6, 1.5, 1.4, "top k\n+ explanation\nper product", "task", fontsize=8)
    arrow(ax, (1.9, 2.5), (2.6, 3.4))
    arrow(ax, (1.9, 2.1), (2.6, 1.1))
    arrow(ax, (4.9, 3.5), (5.5, 3.5), "~N + own")
    arrow(ax, (4.9, 1.05), (5.5, 1.05), "~100")
    arrow(ax, (7.9, 3.4), (8.5, 2.7))
    arrow(ax, (7.9, 1.1), (8.5, 1.9))
    arrow(ax, (10.3, 2.3), (10.8, 2.3))
    ax.text(6.7, 2.35, "ID models cannot score a product they never saw sold:\nthe text path is the only way in",
            ha="center", va="center", fontsize=7.5, style="italic", color="0.3")
    return finish(fig)


def blind_choices() -> Figure:
    """Which customers choose what: the validation customers in two seeded halves, the test set once."""
    fig, ax = canvas(12.5, 2.5, title="Chosen blind: who decides what")
    box(ax, 0.2, 0.6, 2.6, 1.2, "training period\n(before October 2011)\nmodels are fitted", "input", fontsize=8)
    box(ax, 3.2, 1.25, 3.0, 0.85, "validation, first half\nepochs of SASRec, two-tower", "model", fontsize=8)
    box(ax, 3.2, 0.2, 3.0, 0.85, "validation, second half\nweights, repeat terms, text path", "task", fontsize=8)
    box(ax, 6.8, 0.6, 2.7, 1.2, "test (November)\nscored once, at the\nchosen settings", "accent", fontsize=8)
    box(ax, 9.9, 0.6, 2.4, 1.2, "nothing changes\nafter test is seen", "warn", fontsize=8)
    arrow(ax, (2.8, 1.4), (3.2, 1.65))
    arrow(ax, (2.8, 1.0), (3.2, 0.65))
    arrow(ax, (6.2, 1.65), (6.8, 1.35))
    arrow(ax, (6.2, 0.65), (6.8, 1.0))
    arrow(ax, (9.5, 1.2), (9.9, 1.2))
    return finish(fig)

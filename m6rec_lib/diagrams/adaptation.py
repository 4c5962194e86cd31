"""Where the task parameters of each adaptation method sit (notebook 07).

:func:`parameter_map` draws the four methods of notebook 07 one row each, as the model reads a
(history, candidate) pair with an infix prompt: the text (blue), what is frozen (grey), what is
trained (violet) and which vectors classify (green). Its point is option tuning: the last C prompt vectors are inputs of
the transformer *and* the weights of the classifier (the arrow that loops back).
"""

from __future__ import annotations

from matplotlib.figure import Figure

from m6rec_lib.diagrams import arrow, box, canvas, finish

#: method -> (free prompt vectors, option vectors, backbone trained, adapters, linear head)
_METHODS = {
    "fine-tuning": (0, 0, True, False, True),
    "prompt tuning": (8, 0, False, False, True),
    "option tuning": (6, 2, False, False, False),
    "option + adapters": (6, 2, False, True, False),
}


def parameter_map(shares: dict[str, float] | None = None, n_layers: int = 4) -> Figure:
    """One row per method: ``[history] [prompt | options] [candidate] -> blocks -> readout``.

    ``shares``: optional method -> % of the backbone's parameters that the method trains (printed
    under its name, e.g. from ``adaptation.parameter_table``); ``n_layers``: blocks drawn per row.
    """
    if shares is not None:
        unknown = sorted(set(shares) - set(_METHODS))
        if unknown:
            raise ValueError(f"shares names unknown methods {unknown}; methods are {list(_METHODS)}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    row_h, width = 1.6, 12.6
    fig, ax = canvas(width, row_h * len(_METHODS) + 1.0)
    top = row_h * len(_METHODS) + 0.65
    ax.text(0.1, top, "blue: text (no parameters)     grey: frozen, shared by every task     "
            "violet: trained for this task     green: the classifier", fontsize=8.5, va="center")
    slot, n_slots = 0.26, max(f + o for f, o, *_ in _METHODS.values())
    x_prompt = 1.95 + 1.6
    x_cand = x_prompt + slot * n_slots + 0.08
    x_blocks = x_cand + 1.25 + 0.55
    green = "#3b7a2a"
    for k, (method, (n_free, n_opt, backbone, adapters, linear)) in enumerate(_METHODS.items()):
        y = top - 0.35 - row_h * (k + 1) + 0.3
        label = f"{method}\n{shares[method]:.2f}% trained" if shares and method in shares else method
        ax.text(0.1, y + 0.5, label, fontsize=9, fontweight="bold", va="center")
        # the input sequence: history, prompt (infix), candidate
        box(ax, 1.95, y + 0.2, 1.5, 0.6, "<bos> history\n(once per customer)", "input", fontsize=7.5)
        option_x = []
        for i in range(n_free + n_opt):
            is_option = i >= n_free
            x = x_prompt + i * slot
            box(ax, x, y + 0.25, slot - 0.04, 0.5, "o" if is_option else "p", "task" if is_option else "accent",
                fontsize=7)
            if is_option:
                option_x.append(x + (slot - 0.04) / 2)
        if n_free + n_opt == 0:
            ax.text(x_prompt + slot * n_slots / 2, y + 0.5, "no prompt", fontsize=7.5, ha="center", va="center",
                    color="0.4")
        box(ax, x_cand, y + 0.2, 1.25, 0.6, "candidate\nproduct text", "input", fontsize=7.5)
        arrow(ax, (x_cand + 1.3, y + 0.5), (x_blocks - 0.05, y + 0.5))
        # the transformer blocks (with adapters beside them)
        x, bw = x_blocks, 0.62
        for b in range(n_layers):
            box(ax, x, y + 0.2, bw, 0.6, f"block\n{b + 1}", "accent" if backbone else "frozen", fontsize=7)
            if adapters:
                box(ax, x + 0.08, y - 0.22, bw - 0.16, 0.3, "A", "accent", fontsize=7)
            x += bw + 0.1
        if adapters:
            ax.text(x + 0.05, y - 0.07, "a low-rank adapter per block\n(its up-projection starts at 0)",
                    fontsize=7, va="center")
        arrow(ax, (x, y + 0.5), (x + 0.35, y + 0.5), "h")
        x += 0.45
        # the readout at the candidate's last token
        if linear:
            box(ax, x, y + 0.2, 1.55, 0.6, "linear head\nW h + b", "task", fontsize=8)
        else:
            box(ax, x, y + 0.2, 1.55, 0.6, "logit_c = o_c . h\n(no head)", "task", fontsize=8)
            # the option vectors ARE the classifier weights: loop back to them
            for ox in option_x:
                ax.annotate("", xy=(ox, y + 0.78), xytext=(x + 0.78, y + 0.82),
                            arrowprops=dict(arrowstyle="->", color=green, lw=1.0, connectionstyle="arc3,rad=0.16"))
            ax.text(x + 0.78, y + 1.0, "the same vectors", fontsize=7, ha="center", color=green)
    return finish(fig)


def convergence(histories: dict, *, reference: float | None = None, reference_label: str = "") -> Figure:
    """Validation AUC and training loss against training pairs seen, one line per method.

    ``histories``: method -> the frame of :func:`m6rec_lib.adaptation.train_adapted` (columns
    ``pairs``, ``val_auc``, ``train_loss``); ``reference``: an optional horizontal line (e.g. a
    baseline's AUC) labelled ``reference_label``.
    """
    import matplotlib.pyplot as plt

    for name, h in histories.items():
        missing = [c for c in ("pairs", "val_auc", "train_loss") if c not in h.columns]
        if missing:
            raise ValueError(f"{name}: the history lacks {missing}; pass train_adapted's output")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for name, h in histories.items():
        axes[0].plot(h["pairs"], h["val_auc"], marker="o", label=name)
        axes[1].plot(h["pairs"][1:], h["train_loss"][1:], marker="o", label=name)
    axes[0].axhline(0.5, ls=":", c="0.6", lw=0.8)
    if reference is not None:
        axes[0].axhline(reference, ls="--", c="grey", label=reference_label)
    axes[0].set(xlabel="training pairs seen", ylabel="validation AUC", title="Validation AUC (the round kept is the best)")
    axes[1].set(xlabel="training pairs seen", ylabel="training loss (nats)", title="Training loss")
    axes[0].legend(fontsize=8)
    return finish(fig)

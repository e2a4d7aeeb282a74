"""Charts for the report: matplotlib figures returned as self-contained SVG data URIs.

Each function takes already-aggregated numbers (no database access, no statistics) and returns a
``data:image/svg+xml;base64,...`` string that works in the HTML (no network) and in WeasyPrint's PDF.
Text is drawn as paths, so the charts look the same everywhere.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import cbook  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.typing import RcKeyType  # noqa: E402

from tasks.evaluate.statistics import Estimate  # noqa: E402

FAMILY_COLOURS = {"attention": "#d95f02", "reference": "#1b9e77", "baseline": "#7f7f7f"}
STYLE: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "attention-audit",  # stable element ids: the same run renders the same bytes
}


def to_data_uri(figure: Figure) -> str:
    """Serialise a figure as an SVG data URI and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def estimate_bars(
    panels: Sequence[tuple[str, Mapping[str, Estimate], float | None]],
    families: Mapping[str, str],
    titles: Mapping[str, str],
) -> str:
    """Side-by-side horizontal bar panels of means with 95 % interval whiskers.

    Args:
        panels: ``(panel title, method -> estimate, reference line)``; the line (e.g. the random
            baseline's mean) is drawn dashed.
        families: Method -> family, for the bar colour.
        titles: Method -> display name.
    """
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            1,
            len(panels),
            figsize=(3.4 * len(panels), 0.35 * len(families) + 1.2),
            sharey=True,
            squeeze=False,
        )
        axes[0][0].invert_yaxis()  # first method on top (the y axis is shared: invert it once)
        for axis, (title, estimates, line) in zip(axes[0], panels, strict=True):
            methods = list(estimates)
            means = [estimates[m].mean for m in methods]
            lows = [max(0.0, estimates[m].mean - estimates[m].low) if estimates[m].n > 1 else 0.0 for m in methods]
            highs = [max(0.0, estimates[m].high - estimates[m].mean) if estimates[m].n > 1 else 0.0 for m in methods]
            positions = range(len(methods))
            axis.barh(
                list(positions),
                means,
                xerr=[lows, highs],
                capsize=2,
                color=[FAMILY_COLOURS.get(families.get(m, ""), "#999999") for m in methods],
            )
            axis.set_yticks(list(positions), [titles.get(m, m) for m in methods])
            if line is not None:
                axis.axvline(line, color="#444444", linestyle="--", linewidth=0.8)
            axis.axvline(0, color="#000000", linewidth=0.5)
            axis.set_title(title)
        figure.tight_layout()
        return to_data_uri(figure)


MAX_FLIERS = 100
"""Outliers drawn per box at most, so that a box plot's size does not grow with the examples."""


def box_stats(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Matplotlib's box statistics (Tukey's 1.5 IQR whiskers), with at most ``MAX_FLIERS`` outliers.

    Beyond ``MAX_FLIERS``, the outliers drawn are evenly spaced order statistics of them (the smallest
    and the largest included), so the chart keeps their spread; the box and whiskers use every value.
    """
    stats: dict[str, Any] = cbook.boxplot_stats(np.asarray(values, dtype=np.float64))[0]
    fliers = np.sort(stats["fliers"])
    if fliers.size > MAX_FLIERS:
        stats["fliers"] = fliers[np.linspace(0, fliers.size - 1, MAX_FLIERS).round().astype(int)]
    return stats


def distributions(
    panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
    titles: Mapping[str, str],
    xlabel: str,
) -> str:
    """Box plots of per-example values, one panel per reference, one box per method (outliers: ``box_stats``)."""
    with plt.rc_context(STYLE):
        columns = min(len(panels), 2)
        rows = (len(panels) + columns - 1) // columns
        first = panels[0][1] if panels else {}
        figure, axes = plt.subplots(
            rows,
            columns,
            figsize=(3.6 * columns, (0.3 * len(first) + 1.0) * rows),
            sharex=True,
            squeeze=False,
        )
        for axis in axes.flat[len(panels) :]:
            axis.set_visible(False)
        for axis, (title, values) in zip(axes.flat, panels, strict=False):
            methods = list(values)
            axis.bxp(
                [box_stats(values[m]) for m in methods],
                orientation="horizontal",
                widths=0.6,
                flierprops={"markersize": 2, "alpha": 0.4},
                medianprops={"color": "#d95f02"},
            )
            axis.set_yticks(range(1, len(methods) + 1), [titles.get(m, m) for m in methods])
            axis.invert_yaxis()
            axis.axvline(0, color="#444444", linestyle="--", linewidth=0.8)
            axis.set_title(title)
            axis.set_xlabel(xlabel)
        figure.tight_layout()
        return to_data_uri(figure)


def curves(
    panels: Sequence[tuple[str, Mapping[str, Sequence[tuple[float, float]]]]],
    families: Mapping[str, str],
    titles: Mapping[str, str],
    xlabel: str,
) -> str:
    """Line panels: per method, ``(x, y)`` points (e.g. comprehensiveness against rationale size)."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.8), squeeze=False)
        for axis, (title, lines) in zip(axes[0], panels, strict=True):
            for method, points in lines.items():
                family = families.get(method, "")
                axis.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    markersize=3,
                    label=titles.get(method, method),
                    color=None if family != "baseline" else "#7f7f7f",
                    linestyle="--" if family == "baseline" else ("-" if family == "reference" else "-."),
                )
            axis.set_xscale("log")
            ticks = sorted({p[0] for points in lines.values() for p in points})
            axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
            axis.minorticks_off()
            axis.set_xlabel(xlabel)
            axis.set_title(title)
        axes[0][-1].legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        figure.tight_layout()
        return to_data_uri(figure)


def histogram(values: Sequence[float], xlabel: str, threshold: float | None = None) -> str:
    """A histogram of per-example values, with an optional dashed threshold line."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(4.2, 2.2))
        axis.hist(list(values), bins=30, color="#1b9e77")
        if threshold is not None:
            axis.axvline(threshold, color="#444444", linestyle="--", linewidth=0.8)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("examples")
        figure.tight_layout()
        return to_data_uri(figure)


def heatmaps(panels: Sequence[tuple[str, np.ndarray]]) -> str:
    """Side-by-side layer x head heatmaps, each with its colour bar (layer 1 at the top)."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
        for axis, (title, matrix) in zip(axes[0], panels, strict=True):
            image = axis.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
            axis.set_xticks(range(matrix.shape[1]), [str(h + 1) for h in range(matrix.shape[1])], fontsize=7)
            axis.set_yticks(range(matrix.shape[0]), [str(layer + 1) for layer in range(matrix.shape[0])])
            axis.set_xlabel("head")
            axis.set_ylabel("layer")
            axis.set_title(title, fontsize=8.5)
            figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        figure.tight_layout()
        return to_data_uri(figure)


def scatter(points: Sequence[tuple[str, float, float, str]], xlabel: str, ylabel: str) -> str:
    """Labelled points ``(label, x, y, family)``, coloured by family."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.2, 3.4))
        for label, x, y, family in points:
            axis.scatter([x], [y], color=FAMILY_COLOURS.get(family, "#999999"), s=24)
            axis.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        axis.axhline(0, color="#444444", linestyle="--", linewidth=0.8)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        figure.tight_layout()
        return to_data_uri(figure)


def cascade(
    curves: Mapping[str, Sequence[tuple[str, float]]],
    families: Mapping[str, str],
    titles: Mapping[str, str],
    threshold: float,
) -> str:
    """Sanity-check cascade: per method, similarity to the original explanation at each randomisation stage."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(6.4, 3.0))
        labels: list[str] = []
        for method, points in curves.items():
            labels = [label for label, _ in points]
            family = families.get(method, "")
            axis.plot(
                range(len(points)),
                [value for _, value in points],
                marker="o",
                markersize=3,
                label=titles.get(method, method),
                color="#7f7f7f" if family == "baseline" else None,
                linestyle="--" if family == "baseline" else ("-" if family == "reference" else "-."),
            )
        axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        axis.axhline(threshold, color="#444444", linestyle=":", linewidth=0.8)
        axis.set_ylim(-0.2, 1.05)
        axis.set_ylabel("Spearman ρ of |scores|\nwith the original")
        axis.legend(fontsize=6.5, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        figure.tight_layout()
        return to_data_uri(figure)


def matrix(values: np.ndarray, labels: Sequence[str], title: str) -> str:
    """A symmetric method-by-method matrix as an annotated heatmap."""
    with plt.rc_context(STYLE):
        size = 0.42 * len(labels) + 1.6
        figure, axis = plt.subplots(figsize=(size + 0.8, size))
        image = axis.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if not np.isnan(values[i, j]):
                    axis.text(
                        j,
                        i,
                        f"{values[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color="white" if abs(values[i, j]) > 0.5 else "black",
                    )
        axis.set_title(title, fontsize=8.5)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        figure.tight_layout()
        return to_data_uri(figure)

"""Static figures of a run (PNG, matplotlib's Agg backend, no display needed)."""

import logging
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger(__name__)

MAX_SCATTER_POINTS = 20000


def project_to_3d(codes, centers, what="codes"):
    """Codes wider than 3 are projected with PCA (fitted on the codes); narrower ones padded.
    `what` names the space in the returned description."""
    width = codes.shape[1]
    if width > 3:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=3, random_state=0).fit(codes)
        return pca.transform(codes), pca.transform(centers), f"PCA of the {width}-D {what}"
    if width < 3:
        pad = lambda a: np.hstack([a, np.zeros((len(a), 3 - width))])  # noqa: E731
        return pad(codes), pad(centers), f"{width}-D {what}"
    return codes, centers, f"3-D {what}"


def code_scatter(codes, centers, labels, class_names, path, *, title, color_by="true label", what="codes"):
    """3-D scatter of the codes (or of another embedding, named by `what`), one colour per
    class, centroids as large black crosses."""
    points, cents, space = project_to_3d(np.asarray(codes, dtype=np.float64), np.asarray(centers, dtype=np.float64),
                                         what)
    note = ""
    if len(points) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(len(points), MAX_SCATTER_POINTS, replace=False)
        points, labels = points[keep], labels[keep]
        note = f", {MAX_SCATTER_POINTS:,} of {len(codes):,} points shown"
    fig = plt.figure(figsize=(9, 8))
    ax = fig.add_subplot(projection="3d")
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        sel = labels == c
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(*points[sel].T, s=2, alpha=0.5, color=cmap(i % cmap.N), label=name, rasterized=True)
    ax.scatter(*cents.T, marker="x", s=250, linewidths=4, color="black", label="centroids", depthshade=False)
    ax.set_title(f"{title}\n{space}, coloured by {color_by}{note}")
    axis = "code" if what == "codes" else "axis"
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_zlabel(f"{axis} 3")
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), title=color_by)
    for handle in legend.legend_handles:
        handle.set_alpha(1)
        handle.set_sizes([40])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def centroid_grid(images, image_shape, path, *, captions):
    """The decoded centroids as a grid of images, with a caption under each."""
    n = len(images)
    cols = min(n, 10)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, caption in zip(axes.flat, images, captions):
        img = np.clip(np.asarray(img).reshape(image_shape), 0, 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(caption, fontsize=9)
    fig.suptitle("decoded cluster centroids")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_heatmap(table, matching, class_names, path):
    """Clusters (rows) against true classes (columns); the Hungarian matches are outlined. Only the
    cells that hold samples carry a number: with 40 clusters, 1,600 numbers (most of them zeros) hid the
    few that matter and took about a third of the time the figures take."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * table.shape[1], 1.0 + 0.5 * table.shape[0]))
    ax.imshow(table, cmap="Blues")
    big = table.max() / 2 if table.size else 0
    for r, c in zip(*np.nonzero(table)):
        v = table[r, c]
        ax.text(c, r, str(v), ha="center", va="center", fontsize=7, color="white" if v > big else "black")
    for r, c in matching.items():
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    names = class_names if class_names is not None else [str(i) for i in range(table.shape[1])]
    ax.set_xticks(range(table.shape[1]), names[: table.shape[1]], rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]))
    ax.set_xlabel("true class")
    ax.set_ylabel("cluster")
    ax.set_title("confusion matrix (red: Hungarian matching)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curve(history, path, *, loss_name):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(history) + 1), history, marker="o", markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean {loss_name} loss")
    ax.set_title("autoencoder training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(est, dataset, metrics, out):
    """Every figure of a finished run, as PNG files in `out`."""
    codes, labels = est.codes_, est.labels_
    color, color_by = (dataset.y, "true label") if dataset.y is not None else (labels, "cluster")
    names = dataset.class_names if dataset.y is not None else None
    # N2D and UMAP cluster the UMAP embedding, not the codes: show where they cluster.
    points, centers, what = ((est.embedded_, est.mixture_.means_, "UMAP embedding") if est.embedded_ is not None
                             else (codes, est.cluster_centers_, "codes"))
    code_scatter(points, centers, color, names, out / "codes_3d.png",
                       title=f"{dataset.name}: {metrics['preset']} preset, seed {metrics['seed']}", color_by=color_by,
                       what=what)
    if est.history_:
        loss_curve(est.history_, out / "loss.png", loss_name=est.training_.loss)
    if dataset.y is not None:
        confusion_heatmap(np.asarray(metrics["confusion"]), {int(k): v for k, v in metrics["matching"].items()},
                                dataset.class_names, out / "confusion.png")
    if dataset.image_shape is None:
        log.info("samples are not images: the decoded-centroid grid is skipped")
        return
    images = est.decode(est.cluster_centers_)
    sizes = metrics["cluster_sizes"]
    captions = [f"cluster {i}\nn={sizes[i]:,}" for i in range(len(images))]
    if dataset.y is not None:
        # The confusion table has a row per cluster up to the last non-empty one; an empty cluster (one that
        # self-labelling emptied) has no majority.
        confusion = np.asarray(metrics["confusion"])
        majority = confusion.argmax(axis=1)
        names = dataset.class_names or [str(c) for c in range(confusion.shape[1])]
        captions = [f"{c}\nmostly {names[majority[i]]}" if i < len(confusion) and confusion[i].any() else
                    f"{c}\nempty" for i, c in enumerate(captions)]
    centroid_grid(images, dataset.image_shape, out / "centroids.png", captions=captions)

"""A run's report: one self-contained HTML file (plotly.js and every image embedded, no
network request) with the scores, an interactive 3-D view of the codes, the decoded
centroids, per-cluster galleries, the confusion matrix, the loss curve and the config."""

import base64
import html
import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from .metrics import SCORE_NAMES
from .atomic import atomic_write_bytes
from .plots import MAX_SCATTER_POINTS, project_to_3d

log = logging.getLogger(__name__)

GALLERY_SIZE = 8
# A hovered table row shows at most this many of its features.
MAX_HOVER_FEATURES = 40
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5"]


def script_json(value):
    """`value` as JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` are
    written as \\u escapes (so a label like ``</script><script>...`` cannot close the element), as
    are the line separators U+2028/U+2029, which old JavaScript parsers read as line ends."""
    text = json.dumps(value)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _png_data_uri(image):
    """A uint8 (h, w) or (h, w, 3) array as a data: URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _as_uint8_images(samples, image_shape):
    return (np.clip(np.asarray(samples, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8).reshape(
        (len(samples), *image_shape))


def _atlas(images):
    """All hover images tiled into one PNG (compresses far better than one PNG each)."""
    n, h, w = images.shape[:3]
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    sheet = np.zeros((rows * h, cols * w, *images.shape[3:]), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    return _png_data_uri(sheet), cols


def _name(names, value):
    return names[value] if names is not None and value < len(names) else str(value)


def _scatter_figure(codes, centers, y, labels, class_names, shown, space=None, confidence=None):
    """Traces per true class and per cluster (one group visible at a time) plus centroids.
    `space` is (points, centres) of the space the clusters were found in, when that is not the codes."""
    if space is not None:
        width = np.asarray(space[0]).shape[1]
        # The first three dimensions, as they are (PCA would mix the axes UMAP laid out); fewer are padded.
        points, cents, _ = project_to_3d(np.asarray(space[0], dtype=np.float64)[:, :3],
                                         np.asarray(space[1], dtype=np.float64)[:, :3])
        shown_dims = "dimensions 1-3" if width > 3 else f"all {width} dimension{'s' if width > 1 else ''}"
        space = f"UMAP embedding ({shown_dims} of {width}), where the clusters were found"
        axis = "UMAP"
    else:
        points, cents, space = project_to_3d(codes, centers)
        axis = "code"
    points = points[shown]
    clusters = labels[shown]
    groups = []
    if y is not None:
        classes = y[shown]
        groups.append(("label", [(f"class {_name(class_names, c)}", classes == c) for c in np.unique(classes)]))
    groups.append(("cluster", [(f"cluster {k}", clusters == k) for k in np.unique(clusters)]))
    data, visibility = [], {}
    for group, members in groups:
        start = len(data)
        for i, (name, sel) in enumerate(members):
            idx = np.flatnonzero(sel)
            custom = np.stack([shown[idx], (y[shown][idx] if y is not None else -np.ones(len(idx), int)),
                               clusters[idx], idx], axis=1)
            data.append({"type": "scatter3d", "mode": "markers", "name": name, "x": points[idx, 0].tolist(),
                         "y": points[idx, 1].tolist(), "z": points[idx, 2].tolist(),
                         "customdata": custom.tolist(), "meta": group,
                         "marker": {"size": 2, "color": PALETTE[i % len(PALETTE)], "opacity": 0.7},
                         "hovertemplate": "sample %{customdata[0]}<br>label %{customdata[1]}<br>"
                                          "cluster %{customdata[2]}<extra></extra>",
                         "visible": group == groups[0][0]})
        visibility[group] = (start, len(data))
    if confidence is not None:  # one trace, coloured on a scale: how sure each assignment is
        sure = np.asarray(confidence)[shown]
        custom = np.stack([shown, (y[shown] if y is not None else -np.ones(len(shown), int)), clusters,
                           np.arange(len(shown))], axis=1)
        data.append({"type": "scatter3d", "mode": "markers", "name": "confidence", "meta": "confidence",
                     "x": points[:, 0].tolist(), "y": points[:, 1].tolist(), "z": points[:, 2].tolist(),
                     "customdata": custom.tolist(), "text": [f"{c:.3f}" for c in sure],
                     "marker": {"size": 2, "color": sure.round(4).tolist(), "colorscale": "Viridis", "cmin": 0,
                                "cmax": 1, "opacity": 0.8, "colorbar": {"title": {"text": "confidence"}, "x": -0.02,
                                                                            "len": 0.6}},
                     "hovertemplate": "sample %{customdata[0]}<br>label %{customdata[1]}<br>cluster %{customdata[2]}"
                                      "<br>confidence %{text}<extra></extra>", "visible": False})
        visibility["confidence"] = (len(data) - 1, len(data))
    data.append({"type": "scatter3d", "mode": "markers", "name": "centroids", "meta": "centroids",
                 "x": cents[:, 0].tolist(), "y": cents[:, 1].tolist(), "z": cents[:, 2].tolist(),
                 "text": [str(k) for k in range(len(cents))], "hovertemplate": "centroid %{text}<extra></extra>",
                 "marker": {"size": 6, "color": "black", "symbol": "diamond", "line": {"width": 1, "color": "white"}}})
    buttons = []
    for group, (start, end) in visibility.items():
        visible = [start <= i < end for i in range(len(data) - 1)] + [True]
        buttons.append({"label": f"colour by {group}", "method": "restyle", "args": [{"visible": visible}]})
    layout = {"margin": {"l": 0, "r": 0, "t": 30, "b": 0}, "height": 640, "legend": {"itemsizing": "constant"},
              "title": {"text": space, "font": {"size": 13}},
              "scene": {f"{a}axis": {"title": {"text": f"{axis} {i}"}} for i, a in enumerate("xyz", 1)},
              "updatemenus": [{"type": "buttons", "direction": "right", "x": 0, "y": 1.06, "xanchor": "left",
                               "buttons": buttons}] if len(buttons) > 1 else []}
    return {"data": data, "layout": layout}


def _profile_figure(profiles):
    """Clusters x features, coloured by the standardised difference; hover: the values in units."""
    clusters, features = profiles["clusters"], profiles["features"]
    z = [[d if d is not None else 0.0 for d in c["difference"]] for c in clusters]
    custom = [[[_shown_value(c["decoded_centroid"][j]), _shown_value(c["median"][j])] for j in range(len(features))]
              for c in clusters]
    return {"data": [{"type": "heatmap", "z": z, "x": features, "y": [f"cluster {c['cluster']} ({c['size']:,})"
                                                                     for c in clusters],
                      "customdata": custom, "colorscale": "RdBu", "reversescale": False, "zmid": 0,
                      "colorbar": {"title": {"text": "sd from the rest"}},
                      "hovertemplate": "%{y} · %{x}<br>%{z:+.2f} sd from the rest<br>decoded centroid "
                                       "%{customdata[0]}<br>median %{customdata[1]}<extra></extra>"}],
            "layout": {"height": 120 + 28 * len(clusters), "margin": {"t": 10, "l": 130},
                       "yaxis": {"autorange": "reversed"}, "xaxis": {"automargin": True}}}


def _shown_value(value):
    return "-" if value is None else f"{value:.4g}"


def _profile_table(profiles):
    """The three features that set each cluster apart most, as a small table."""
    rows = "".join(
        f"<tr><td>cluster {c['cluster']}</td><td>{c['size']:,}</td><td>"
        + html.escape(", ".join(f"{t['feature']} {'+' if t['difference'] > 0 else '-'}{abs(t['difference']):.1f} sd"
                                for t in c["top"]) or "like the rest") + "</td></tr>"
        for c in profiles["clusters"])
    return ("<table class='scores profiles'><tr><th>cluster</th><th>size</th><th>sets it apart</th></tr>"
            f"{rows}</table>")


def _confusion_figure(confusion, matching, class_names):
    table = np.asarray(confusion)
    names = [_name(class_names, c) for c in range(table.shape[1])]
    shapes = [{"type": "rect", "x0": c - 0.5, "x1": c + 0.5, "y0": r - 0.5, "y1": r + 0.5,
               "line": {"color": "red", "width": 2}} for r, c in matching.items()]
    return {"data": [{"type": "heatmap", "z": table.tolist(), "x": list(range(table.shape[1])),
                      "y": list(range(table.shape[0])), "colorscale": "Blues", "reversescale": True, "text": table.tolist(),
                      "texttemplate": "%{text}", "hovertemplate": "cluster %{y}, class %{x}: %{z}<extra></extra>"}],
            "layout": {"height": 120 + 32 * table.shape[0], "margin": {"t": 30},
                       "xaxis": {"title": {"text": "true class"}, "tickvals": list(range(len(names))),
                                 "ticktext": names},
                       "yaxis": {"title": {"text": "cluster"}, "autorange": "reversed", "dtick": 1},
                       "shapes": shapes, "title": {"text": "red: Hungarian matching of clusters to classes",
                                                   "font": {"size": 13}}}}


def _loss_figure(history, loss_name):
    return {"data": [{"type": "scatter", "mode": "lines+markers", "x": list(range(1, len(history) + 1)),
                      "y": history, "name": loss_name}],
            "layout": {"height": 320, "margin": {"t": 20}, "xaxis": {"title": {"text": "epoch"}},
                       "yaxis": {"title": {"text": f"mean {loss_name} loss"}}}}


def _galleries(codes, centers, labels, images, image_shape, y, class_names):
    """Per cluster: the members nearest the centroid and the farthest (least typical) ones.
    Only the samples shown are read from `images`."""
    parts = []
    for k, center in enumerate(centers):
        members = np.flatnonzero(labels == k)
        if len(members) == 0:
            continue
        dist = np.linalg.norm(codes[members] - center, axis=1)
        order = members[np.argsort(dist, kind="stable")]
        rows = []
        for title, chosen in (("nearest the centroid", order[:GALLERY_SIZE]),
                              ("farthest from it (least sure)", order[::-1][:GALLERY_SIZE])):
            tiles = _as_uint8_images(images[chosen], image_shape)
            cells = "".join(
                f'<figure><img class="sample" src="{_png_data_uri(tile)}" alt="sample {i}">'
                f"<figcaption>#{i}{'' if y is None else ' · ' + html.escape(_name(class_names, y[i]))}</figcaption></figure>"
                for i, tile in zip(chosen, tiles))
            rows.append(f"<div class='gallery-row'><h4>{title}</h4><div class='tiles'>{cells}</div></div>")
        parts.append(f"<div class='cluster'><h3>cluster {k} <small>({len(members):,} samples)</small></h3>"
                     + "".join(rows) + "</div>")
    return "".join(parts)


def baseline_name(metrics):
    """What the k-means baseline clustered: pixels for images, the raw features otherwise."""
    return "raw pixels" if metrics.get("image_shape") else "raw features"


def separation_sentence(metrics):
    """What the label-free separation check found, in words (terminal and report alike)."""
    sep = metrics["separation"]
    where = f"on the scaled input (mean silhouette {sep['baseline']:.3f} against {sep['encoding']:.3f})"
    if sep.get("baseline_in_space") is not None:
        where += (f" and where the encoding's clusters were found ({sep['baseline_in_space']:.3f} against "
                  f"{sep['encoding_in_space']:.3f})")
    return (f"k-means on the {baseline_name(metrics)} gives clusters at least as well separated as the encoding's, "
            f"{where}, no labels used; the encoding may not help here: compare both before trusting either")


def layouts_sentence(record):
    """What several UMAP layouts came to (`EncodingClusterer.layout_agreement_`), in a few words."""
    agreement = record["agreement"]
    return (f"laid out {record['layouts']} times, kept layout {record['kept']}: its clusters agree best with the "
            f"others' (mean ARI {agreement[record['kept']]:.3f}; lowest {min(agreement):.3f})")


def confidence_sentence(record):
    """How sure the assignments are (`metrics.json`'s "confidence"), in a line."""
    sentence = (f"confidence: mean {record['mean']:.2f} ({record['source']}'s, matched to the neighbours' agreement "
                f"{record['neighbour_agreement']:.2f})")
    if record.get("least_sure_between"):
        a, b, _ = record["least_sure_between"][0]
        sentence += f"; the least sure tenth lie mostly between clusters {a} and {b}"
    if record.get("unsure_share") is not None:
        sentence += f"; {100 * record['unsure_share']:.1f} % marked unsure (-1)"
        if record.get("scores_of_the_sure"):
            sentence += f", ACC {record['scores_of_the_sure']['acc']:.4f} on the rest"
    return sentence


def space_sentence(record):
    """Which space was clustered and why (`EncodingClusterer.space_choice_`, with each candidate's
    scores where there were labels), in a few words."""
    agreement, scores, chosen = record["agreement"], record.get("scores"), record["chosen"]
    other = "encoding" if chosen == "input" else "input"
    what = "the scaled input, not its encoding" if chosen == "input" else "the encoding, not the scaled input"
    sentence = (f"clustered {what}: its UMAP layouts' clusters agree more across seeds (mean ARI "
                f"{agreement[chosen]:.3f} against {agreement[other]:.3f}; no labels used)")
    if scores:
        sentence += f"; ACC {scores[chosen]['acc']:.4f}, the {other}'s {scores[other]['acc']:.4f}"
    return sentence


def _scores_table(runs):
    """Scores on the encoding (and raw pixels) for one or several runs."""
    head = "<tr><th>run</th><th>data</th>" + "".join(f"<th>{n}</th>" for n in SCORE_NAMES) + "</tr>"
    body = []
    for label, metrics in runs:
        for kind, scores in (("encoding", metrics), ("pixels", metrics.get("pixels"))):
            if not scores or scores.get("acc") is None:
                continue
            cells = "".join(f'<td data-run="{html.escape(label)}" data-kind="{kind}" data-metric="{n}" '
                            f'data-value="{scores[n]!r}">{scores[n]:.4f}</td>' for n in SCORE_NAMES)
            shown = kind if kind == "encoding" else baseline_name(metrics)
            body.append(f"<tr><td>{html.escape(label)}</td><td>{shown}</td>{cells}</tr>")
    if not body:
        return "<p>No labels, so no scores: the clusters are shown as found.</p>"
    return f"<table class='scores'>{head}{''.join(body)}</table>"


def _confidence_section(record, confidence, images, image_shape, y, class_names, rows, features):
    """How sure the assignments are: the histogram, the pairs of clusters the least sure lie between, and
    the least sure samples themselves (images, or a table's rows)."""
    if not record or confidence is None:
        return ""
    lines = [f"<p>{html.escape(confidence_sentence(record)[0].upper() + confidence_sentence(record)[1:])}.</p>",
             "<div id='confidence'></div>"]
    if record.get("least_sure_between"):
        pairs = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{n:,}</td></tr>" for a, b, n in record["least_sure_between"])
        lines.append("<table class='scores'><tr><th>cluster</th><th>and cluster</th><th>of the least sure tenth"
                     f"</th></tr>{pairs}</table><p class='note'>Each of the least sure samples counts for its two "
                     "likeliest clusters.</p>")
    least = np.argsort(confidence, kind="stable")[:GALLERY_SIZE * 2]
    if images is not None and image_shape is not None:
        tiles = _as_uint8_images(images[least], image_shape)
        cells = "".join(
            f'<figure><img class="sample" src="{_png_data_uri(tile)}" alt="sample {i}"><figcaption>#{i} · '
            f"{confidence[i]:.2f}{'' if y is None else ' · ' + html.escape(_name(class_names, y[i]))}</figcaption>"
            "</figure>" for i, tile in zip(least, tiles))
        lines.append(f"<h3>The least sure samples</h3><div class='tiles'>{cells}</div>")
    elif rows is not None and features:
        head = "".join(f"<th>{html.escape(str(f))}</th>" for f in features[:MAX_HOVER_FEATURES])
        body = "".join(f"<tr><td>#{i}</td><td>{confidence[i]:.2f}</td>"
                       + "".join(f"<td>{_shown_value(v)}</td>" for v in np.asarray(rows[i])[:MAX_HOVER_FEATURES])
                       + "</tr>" for i in least)
        lines.append(f"<h3>The least sure rows</h3><table class='scores'><tr><th>row</th><th>confidence</th>{head}"
                     f"</tr>{body}</table>")
    return f"<section><h2>How sure each assignment is</h2>{''.join(lines)}</section>"


def _confidence_figure(record):
    """The confidence histogram (bars over the bins metrics.json keeps)."""
    bins = record["bins"]
    return {"data": [{"type": "bar", "x": [f"{a:.1f}-{b:.1f}" for a, b in zip(bins, bins[1:])],
                      "y": record["histogram"], "marker": {"color": "#3b6ea5"}}],
            "layout": {"height": 260, "margin": {"t": 10}, "xaxis": {"title": {"text": "confidence"}},
                       "yaxis": {"title": {"text": "samples"}}}}


def _selflabel_section(summary):
    """What self-labelling did: who taught the classifier, how it was trained, what it moved."""
    if not summary:
        return ""
    augmentation = ", ".join(f"{name} {value:g}" for name, value in summary["augmentation"].items()) or "none"
    before = summary.get("before")
    scored = (f" ACC {before['acc']:.4f} before it (the clustering's own labels)." if before else "")
    lines = [f"<p>{summary['sure_members']:,} sure members ({100 * summary['sure_share']:.1f} % of the samples: every "
             "nearest neighbour in code space in their cluster) taught a "
             f"{summary['classifier'].upper()} for {summary['steps']:,} steps, label smoothing "
             f"{summary.get('smoothing', 0):g}, augmentation: {html.escape(augmentation)}. "
             f"It moved <b>{summary['moved']:,}</b> samples to another cluster.{scored}</p>"]
    if summary["moves"]:
        rows = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{count:,}</td></tr>" for a, b, count in summary["moves"][:10])
        lines.append("<table class='scores'><tr><th>from cluster</th><th>to cluster</th><th>samples</th></tr>"
                     f"{rows}</table><p class='note'>The largest flows; model.json lists up to 20.</p>")
    return f"<section><h2>Self-labelling</h2>{''.join(lines)}</section>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1e0;font-size:14px}main{padding:18px 28px;max-width:1400px}
section{background:#fff;border-radius:8px;padding:14px 18px;margin-bottom:18px;box-shadow:0 1px 3px #0001}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:10px 0 4px}h4{font-size:12px;margin:4px 0;color:#667}
table.scores{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.scores td,table.scores th{padding:4px 12px;border-bottom:1px solid #e3e6eb;text-align:right}
table.scores td:first-child,table.scores td:nth-child(2),table.scores th{text-align:left}
table.profiles td:nth-child(3){text-align:left}
.facts{display:flex;flex-wrap:wrap;gap:8px 22px;font-size:14px;margin:10px 0 0}.facts b{color:#445}
.scatter-wrap{display:flex;gap:16px}.scatter-wrap #scatter{flex:1;min-width:0}
#hover-panel{width:190px;font-size:13px;white-space:pre-line}#hover-panel canvas{width:168px;height:168px;image-rendering:pixelated;
border:1px solid #ccd;background:#000}
.centroids{display:flex;flex-wrap:wrap;gap:10px}.tiles{display:flex;gap:6px}figure{margin:0;text-align:center;font-size:12px}
img.centroid{width:84px;height:84px;image-rendering:pixelated;border:1px solid #ccd}
img.sample{width:42px;height:42px;image-rendering:pixelated}.tiles figure{width:48px;font-size:10px}
.clusters{display:grid;grid-template-columns:repeat(auto-fill,minmax(470px,1fr));gap:10px}
.cluster{border:1px solid #e3e6eb;border-radius:6px;padding:6px 10px}pre{font-size:12px;overflow:auto}
.note{color:#667;font-size:13px}.warning{background:#fff4e5;border-left:4px solid #f0a030;padding:6px 10px}
"""

HOVER_JS = """
const scatter = document.getElementById('scatter');
const atlas = document.getElementById('atlas');
const panel = document.getElementById('hover-text');
const canvas = document.getElementById('hover-canvas');
scatter.on('plotly_hover', (event) => {
  const p = event.points[0];
  if (!p.customdata) return;
  const [index, label, cluster, tile] = p.customdata;
  panel.textContent = `sample ${index} · label ${label < 0 ? 'unknown' : LABEL_NAMES[label] ?? label} · cluster ${cluster}`;
  if (TABLE && TABLE.shown[index] !== undefined) {
    const values = TABLE.rows[TABLE.shown[index]];
    panel.textContent += '\\n' + TABLE.features.map((f, i) => `${f}: ${values[i]}`).join('\\n');
  }
  if (!atlas || !canvas) return;
  const shown = SHOWN_TILE[index];
  const [h, w, cols] = ATLAS;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(atlas, (shown % cols) * w, Math.floor(shown / cols) * h, w, h, 0, 0, canvas.width, canvas.height);
});
"""


def render_report(*, metrics, config, codes, labels, centers, history, loss_name, y=None, class_names=None,
                  images=None, centroid_images=None, image_shape=None, profiles=None, rows=None, space=None,
                  confidence=None):
    """Build the report's HTML (a string). `images` are the samples in [0, 1], flattened; for a
    table, `profiles` (`encluster.profiles`) and its raw `rows` (shown when a point is hovered);
    `confidence`: each sample's (`encluster.confidence`)."""
    n = len(codes)
    shown = np.arange(n)
    subsample_note = ""
    if n > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(n, MAX_SCATTER_POINTS, replace=False))
        subsample_note = (f"{MAX_SCATTER_POINTS:,} of {n:,} points are shown, drawn at random with a fixed "
                          "seed (0); scores use every sample.")
    figures = {"scatter": _scatter_figure(codes, centers, y, labels, class_names, shown, space, confidence)}
    if metrics.get("confidence") and confidence is not None:
        figures["confidence"] = _confidence_figure(metrics["confidence"])
    if history:  # no network (method umap), no training to show
        figures["loss"] = _loss_figure(history, loss_name)
    if metrics.get("confusion") is not None:
        figures["confusion"] = _confusion_figure(metrics["confusion"], {int(k): v for k, v in metrics["matching"].items()},
                                                 class_names)
    is_image = images is not None and image_shape is not None
    atlas_html, atlas_js = "", "const ATLAS = null; const SHOWN_TILE = {};"
    if is_image:
        tiles = _as_uint8_images(images[shown], image_shape)
        uri, cols = _atlas(tiles)
        atlas_html = f'<img id="atlas" src="{uri}" hidden alt="">'
        atlas_js = (f"const ATLAS = [{image_shape[0]}, {image_shape[1]}, {cols}];\n"
                    f"const SHOWN_TILE = Object.fromEntries({script_json(shown.tolist())}.map((s, i) => [s, i]));")
    names_js = f"const LABEL_NAMES = {script_json(list(class_names) if class_names else [])};"
    rows_js = "const TABLE = null;"
    if profiles is not None:
        figures["profiles"] = _profile_figure(profiles)
        if rows is not None:
            columns = profiles["features"][:MAX_HOVER_FEATURES]
            values = np.asarray(rows[shown][:, : len(columns)], dtype=np.float64)
            rows_js = (f"const TABLE = {{features: {script_json(columns)}, rows: "
                       f"{script_json([[float(f'{v:.5g}') for v in row] for row in values])}, "
                       f"shown: Object.fromEntries({script_json(shown.tolist())}.map((s, i) => [s, i]))}};")

    title = f"{metrics['dataset']} · preset {metrics['preset']} · seed {metrics['seed']}"
    facts = {"samples": f"{metrics['n_samples']:,}", "features": metrics.get("n_features"),
             "clusters": metrics["n_clusters"], "train": f"{metrics.get('train_seconds', 0):.1f} s",
             "total": f"{metrics.get('total_seconds', 0):.1f} s", "peak memory": f"{metrics.get('peak_memory_mb', 0):.0f} MB",
             "final loss": f"{metrics['final_loss']:.4f}" if metrics.get("final_loss") is not None else "no network",
             "encluster": metrics.get("encluster_version")}
    if metrics.get("layout_agreement"):
        facts["UMAP"] = layouts_sentence(metrics["layout_agreement"])
    if metrics.get("space_choice"):
        facts["space"] = space_sentence(metrics["space_choice"])
    facts_html = "".join(f"<span><b>{k}</b> {html.escape(str(v))}</span>" for k, v in facts.items())
    separation = metrics.get("separation") or {}
    warning = ""
    if separation.get("raw_at_least_as_good"):
        sentence = separation_sentence(metrics)
        warning = f"<p class='warning'>{html.escape(sentence[0].upper() + sentence[1:])}.</p>"
    sections = [f"<section><h2>Scores</h2>{warning}{_scores_table([(title, metrics)])}<div class='facts'>{facts_html}</div>"
                "<p class='note'>ACC: best one-to-one matching of clusters to classes; purity: majority class share; "
                "mean_cluster_purity: the original experiment's mean over clusters.</p></section>"]
    if metrics.get("selflabel"):
        sections.append(_selflabel_section(metrics["selflabel"]))
    sections.append(_confidence_section(metrics.get("confidence"), confidence, images, image_shape, y, class_names,
                                        rows, (profiles or {}).get("features")))
    hover_panel = ("<div id='hover-panel'><canvas id='hover-canvas' width='168' height='168'></canvas>"
                   "<p id='hover-text'>hover a point to see the sample</p></div>" if is_image else
                   "<div id='hover-panel'><p id='hover-text'>hover a point to see its values</p></div>")
    sections.append(f"<section><h2>The clusters in 3-D</h2><p class='note'>{subsample_note} Drag to rotate; the buttons "
                    f"switch the colours between true label, cluster and confidence; black diamonds are the "
                    "centroids.</p>"
                    f"<div class='scatter-wrap'><div id='scatter'></div>{hover_panel}</div></section>")
    if is_image and centroid_images is not None:
        cents = _as_uint8_images(centroid_images, image_shape)
        sizes = metrics.get("cluster_sizes", [])
        figs = "".join(f'<figure><img class="centroid" src="{_png_data_uri(img)}" alt="centroid {k}">'
                       f"<figcaption>cluster {k}<br>{sizes[k] if k < len(sizes) else 0:,} samples</figcaption></figure>"
                       for k, img in enumerate(cents))
        sections.append(f"<section><h2>Decoded centroids</h2><div class='centroids'>{figs}</div></section>")
        sections.append("<section><h2>What each cluster holds</h2><div class='clusters'>"
                        f"{_galleries(codes, centers, labels, images, image_shape, y, class_names)}</div></section>")
    elif profiles is not None:
        sections.append("<section><h2>What sets each cluster apart</h2><p class='note'>Each cell: how far the "
                        "cluster's mean lies from the other rows' mean, in standard deviations of that feature "
                        "(red higher, blue lower). Hover a cell for the decoded centroid and the members' median "
                        "in the data's own units; <code>profiles.csv</code> holds them all.</p>"
                        f"{_profile_table(profiles)}<div id='profiles'></div></section>")
    if "confusion" in figures:
        sections.append("<section><h2>Confusion matrix</h2><div id='confusion'></div></section>")
    if "loss" in figures:
        sections.append("<section><h2>Training loss</h2><div id='loss'></div></section>")
    sections.append("<section><details><summary>Full configuration</summary><pre>"
                    f"{html.escape(json.dumps(config, indent=2))}</pre></details></section>")
    return _page(f"encluster report: {title}", "encluster report", title, "".join(sections) + atlas_html, figures,
                 extra_js=f"{names_js}\n{atlas_js}\n{rows_js}", after_js=HOVER_JS)


def _page(title, heading, subtitle, body, figures, *, extra_js="", after_js=""):
    """A self-contained page: the style, plotly.js inline, the body, and each figure drawn
    into the element whose id is its key."""
    import plotly.offline

    plots_js = "\n".join(f"Plotly.newPlot({script_json(key)}, FIGURES[{script_json(key)}].data, FIGURES[{script_json(key)}].layout, "
                         "{responsive: true, displaylogo: false});" for key in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style>
<script>{plotly.offline.get_plotlyjs()}</script></head>
<body><header><h1>{html.escape(heading)}</h1><p>{html.escape(subtitle)}</p></header><main>
{body}
</main>
<script>
const FIGURES = {script_json(figures)};
{extra_js}
{plots_js}
{after_js}
</script></body></html>
"""


def write_report(path, **parts):
    """Render and write the report atomically; return its path."""
    path = Path(path)
    atomic_write_bytes(path, render_report(**parts).encode("utf-8"))
    log.info("report written to %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def render_comparison(runs):
    """One page comparing finished runs: `runs` is a list of (name, metrics) pairs."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(m['dataset']))}</td><td>{m['n_samples']:,}</td>"
        f"<td>{html.escape(str(m['preset']))}</td><td>{m['seed']}</td><td>{m.get('train_seconds', 0):.1f}</td>"
        f"<td>{m.get('total_seconds', 0):.1f}</td><td>{m.get('peak_memory_mb', 0):.0f}</td></tr>"
        for name, m in runs)
    facts = ("<table class='scores'><tr><th>run</th><th>data set</th><th>samples</th><th>preset</th><th>seed</th>"
             f"<th>train s</th><th>total s</th><th>peak MB</th></tr>{rows}</table>")
    scored = [(name, m) for name, m in runs if m.get("acc") is not None]
    figures = {"loss": {"data": [{"type": "scatter", "mode": "lines", "name": name,
                                  "x": list(range(1, len(m.get("history", [])) + 1)), "y": m.get("history", [])}
                                 for name, m in runs],
                        "layout": {"height": 340, "margin": {"t": 20}, "xaxis": {"title": {"text": "epoch"}},
                                   "yaxis": {"title": {"text": "training loss"}}}}}
    if scored:
        figures["scores"] = {"data": [{"type": "bar", "name": name, "x": list(SCORE_NAMES),
                                       "y": [m[s] for s in SCORE_NAMES]} for name, m in scored],
                             "layout": {"height": 340, "margin": {"t": 20}, "barmode": "group",
                                        "yaxis": {"range": [0, 1]}}}
    chart = "<div id='scores'></div>" if scored else ""
    body = (f"<section><h2>Scores</h2>{_scores_table(runs)}{chart}</section>"
            f"<section><h2>Runs</h2>{facts}</section>"
            "<section><h2>Training loss</h2><div id='loss'></div></section>")
    return _page(f"encluster: {len(runs)} runs compared", "encluster comparison", f"{len(runs)} runs", body, figures)

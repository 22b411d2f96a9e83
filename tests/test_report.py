"""The HTML report, opened in a real headless Chromium with the network blocked."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the report tests (see .ci/run)")
    pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader"]


def _run(tmp_path_factory, *args):
    out = tmp_path_factory.mktemp("run") / "run"
    result = subprocess.run([sys.executable, "-m", "encluster", "run", *map(str, args), "--out", str(out), "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return _run(tmp_path_factory, "--preset", "original", "--dataset", "digits", "--max-samples", "400", "--epochs", "5",
                "--n-init", "2", "--selflabel", "on", "--selflabel-steps", "100")


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.3, size=(60, 7)) for c in (0, 3, 6)])
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, X=X, y=np.repeat([0, 1, 2], 60))
    return _run(tmp_path_factory, "--dataset", path, "--clusters", "3", "--epochs", "5", "--n-init", "2")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def open_report(browser, path):
    """Load a run report offline; return the page, its console errors and any network requests."""
    page, errors, requests = open_report_page(browser, path)
    page.wait_for_function("document.getElementById('scatter') && document.getElementById('scatter')._fullLayout")
    return page, errors, requests


def open_report_page(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def block(route):
        if not route.request.url.startswith(("file:", "data:")):
            requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", block)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, errors, requests


TRACE_SUMMARY = """() => {
  const traces = document.getElementById('scatter').data;
  const group = (g) => traces.filter(t => t.meta === g);
  return {
    label: group('label').map(t => t.x.length), cluster: group('cluster').map(t => t.x.length),
    centroids: group('centroids').map(t => t.x.length), webgl: !!document.querySelector('#scatter canvas'),
  };
}"""

CENTROID_PIXELS = """() => Array.from(document.querySelectorAll('img.centroid')).map(img => {
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
  return {w: img.naturalWidth, h: img.naturalHeight, range: hi - lo};
})"""

SCORES = """() => Array.from(document.querySelectorAll('td[data-metric]')).map(td =>
  [td.dataset.kind, td.dataset.metric, Number(td.dataset.value), td.textContent])"""


def test_image_report(browser, image_run):
    metrics = json.loads((image_run / "metrics.json").read_text())
    page, errors, requests = open_report(browser, image_run / "report.html")
    assert errors == [] and requests == []
    traces = page.evaluate(TRACE_SUMMARY)
    assert traces["webgl"]
    y = np.load(image_run / "assignments.npy")
    assert len(traces["label"]) == 10 and sum(traces["label"]) == 400  # one trace per digit
    assert sorted(traces["cluster"]) == sorted(np.bincount(y)[np.bincount(y) > 0].tolist())
    assert traces["centroids"] == [metrics["n_clusters"]]
    centroids = page.evaluate(CENTROID_PIXELS)
    assert len(centroids) == metrics["n_clusters"]
    assert all(c["w"] == 8 and c["h"] == 8 and c["range"] > 0 for c in centroids)  # decoded, not blank
    scores = page.evaluate(SCORES)
    assert len(scores) == 10
    for kind, name, value, text in scores:
        expected = metrics[name] if kind == "encoding" else metrics["pixels"][name]
        assert value == expected and text == f"{expected:.4f}"
    # What self-labelling did: the moved count and the largest flow, as metrics.json has them.
    relabelled = metrics["selflabel"]
    section = page.inner_text("section:has(h2:text('Self-labelling'))")
    assert f"It moved {relabelled['moved']:,} samples" in section and "CNN for 100 steps" in section
    assert f"label smoothing {relabelled['smoothing']:g}," in section
    assert f"ACC {relabelled['before']['acc']:.4f} before it" in section
    if relabelled["moves"]:
        first, second, count = relabelled["moves"][0]
        assert f"{first}\t{second}\t{count}" in section
    # How sure: the histogram as metrics.json has it, the pairs, the least sure images, colour by confidence.
    sure = metrics["confidence"]
    section = page.inner_text("section:has(h2:text('How sure each assignment is'))")
    assert f"mean {sure['mean']:.2f}" in section and "The least sure samples" in section
    bars = page.evaluate("() => document.getElementById('confidence').data[0].y")
    assert bars == sure["histogram"] and sum(bars) == 400
    confidence = np.load(image_run / "confidence.npy")
    least = int(np.argmin(confidence))
    assert f"#{least} · {confidence[least]:.2f}" in section
    page.click("text=colour by confidence")
    shown = page.evaluate("""() => document.getElementById('scatter').data.filter(t => t.visible === true)
        .map(t => [t.name, t.marker.color.length || 0])""")
    assert shown[0] == ["confidence", 400] and [name for name, _ in shown] == ["confidence", "centroids"]
    page.click("text=colour by label")
    # Hovering a point shows that sample's image in the side panel.
    page.evaluate("""() => { const s = document.getElementById('scatter');
        s.emit('plotly_hover', {points: [{customdata: s.data[0].customdata[0]}]}); }""")
    assert page.inner_text("#hover-text").startswith("sample ")
    assert page.evaluate("""() => { const c = document.getElementById('hover-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return d.some(v => v > 0 && v < 255); }""")
    page.close()


def test_non_image_report(browser, table_run):
    metrics = json.loads((table_run / "metrics.json").read_text())
    page, errors, requests = open_report(browser, table_run / "report.html")
    assert errors == [] and requests == []
    traces = page.evaluate(TRACE_SUMMARY)
    assert len(traces["label"]) == 3 and sum(traces["label"]) == 180
    assert page.query_selector_all("img.centroid") == [] and page.query_selector("#atlas") is None
    # A table's clusters are described by their features: a heatmap of clusters x features, and
    # hovering a point shows that row's values.
    heatmap = page.evaluate("() => document.getElementById('profiles').data[0]")
    assert len(heatmap["z"]) == metrics["n_clusters"] and heatmap["x"] == [f"x{i}" for i in range(7)]
    page.evaluate("""() => { const s = document.getElementById('scatter');
        s.emit('plotly_hover', {points: [{customdata: s.data[0].customdata[0]}]}); }""")
    assert "x0: " in page.inner_text("#hover-text") and "x6: " in page.inner_text("#hover-text")
    assert "UMAP embedding" in page.evaluate("() => document.getElementById('scatter').layout.title.text")
    assert "raw features" in page.inner_text("table.scores") and "raw pixels" not in page.inner_text("body")
    # The default clusters a 7-column table without a network: no training loss to show.
    assert metrics["method"] == "umap" and "Training loss" not in page.inner_text("body")
    # 180 rows: UMAP laid out five times, and the facts say which layout was kept and how well it agreed.
    layouts = metrics["layout_agreement"]
    assert layouts["layouts"] == 5 and len(layouts["agreement"]) == 5
    facts = page.inner_text(".facts")
    assert (f"laid out 5 times, kept layout {layouts['kept']}" in facts
            and f"mean ARI {layouts['agreement'][layouts['kept']]:.3f}" in facts)
    for kind, name, value, _ in page.evaluate(SCORES):
        assert value == (metrics[name] if kind == "encoding" else metrics["pixels"][name])
    # A table's least sure samples are shown as rows of its values.
    section = page.inner_text("section:has(h2:text('How sure each assignment is'))")
    confidence = np.load(table_run / "confidence.npy")
    assert "The least sure rows" in section and f"#{int(np.argmin(confidence))}\t{confidence.min():.2f}" in section
    page.close()


def test_report_command_rewrites_the_report(image_run):
    report = image_run / "report.html"
    report.unlink()
    result = subprocess.run([sys.executable, "-m", "encluster", "report", str(image_run)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert report.stat().st_size > 1_000_000  # plotly.js is embedded: it must work offline
    import re

    markup = re.sub(r"<script>.*?</script>", "", report.read_text(), flags=re.S)  # plotly.js's own strings aside
    assert "<script" not in markup and not re.search(r"(src|href)=[\"']?(https?:)?//", markup)


def test_compare_runs(browser, image_run, table_run, tmp_path):
    out = tmp_path / "compare.html"
    result = subprocess.run([sys.executable, "-m", "encluster", "compare", str(image_run), str(table_run), "--out",
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    runs = {p.name: json.loads((p / "metrics.json").read_text()) for p in (image_run, table_run)}
    assert f"{runs['run']['acc']:.4f}" in result.stdout
    page, errors, requests = open_report_page(browser, out)
    assert errors == [] and requests == []
    values = page.evaluate(SCORES)
    assert len(values) == 2 * 2 * 5  # two runs, encoding and pixels, five scores
    assert page.evaluate("() => document.getElementById('scores').data.length") == 2
    page.close()


# Strings that would run script if pasted into the page as they are: one closes the <script>
# element the figures live in, the others are markup whose handlers fire on load.
INJECTIONS = ["</script><script>document.title='pwned-script'</script>", "<img src=x onerror=\"document.title='pwned-img'\">",
              "<svg onload=document.title='pwned-svg'>"]


def _assert_nothing_ran(browser, report):
    page, errors, requests = open_report_page(browser, report)
    page.wait_for_timeout(500)  # let any onerror/onload handler run
    assert page.title().startswith("encluster report") and "pwned" not in page.title()
    assert requests == [] and not [e for e in errors if "pwned" in e]
    assert page.evaluate("() => document.querySelectorAll('script').length") == 2  # plotly.js and ours, no more
    page.close()
    return page


def test_a_csv_whose_labels_and_header_hold_markup_cannot_run_script_in_its_report(browser, tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("csv")
    path = folder / "hostile.csv"
    header = ",".join([f"f{i}" for i in range(3)] + [INJECTIONS[2].replace(",", " "), "label"])
    rows = [",".join(f"{v:.3f}" for v in rng.normal(c, 0.3, size=4)) + f",\"{INJECTIONS[c].replace(chr(34), chr(34) * 2)}\""
            for c in (0, 1, 2) for _ in range(30)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    run = _run(tmp_path_factory, "--dataset", path, "--label-column", "label", "--clusters", "3", "--epochs", "3",
               "--n-init", "1")
    _assert_nothing_ran(browser, run / "report.html")
    text = (run / "report.html").read_text()
    assert INJECTIONS[0] not in text and "<img src=x" not in text and "<svg onload" not in text


def test_an_image_folder_whose_class_folder_holds_markup_cannot_run_script_in_its_report(browser, tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images") / "hostile"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["<img src=x onerror=document.title='pwned-folder'>", "<svg onload=document.title='x'>",
                              "plain"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(60 + 70 * c, 20, size=(8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    run = _run(tmp_path_factory, "--dataset", root, "--clusters", "3", "--epochs", "3", "--n-init", "1", "--preset",
               "original")
    _assert_nothing_ran(browser, run / "report.html")
    assert "<img src=x" not in (run / "report.html").read_text()


def test_the_confusion_figure_numbers_only_the_cells_that_hold_samples(tmp_path, monkeypatch):
    """40 clusters: 41 numbers, not 1,600 of which 1,559 are zeros."""
    from encluster import plots

    drawn = []
    monkeypatch.setattr(plots.plt, "close", drawn.append)  # keep the figure to read it
    table = np.zeros((40, 40), dtype=int)
    table[np.arange(40), np.arange(40)] = 10
    table[3, 7] = 2
    plots.confusion_heatmap(table, {i: i for i in range(40)}, None, tmp_path / "confusion.png")
    numbers = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in drawn[0].axes[0].texts}
    assert numbers == {**{(i, i): "10" for i in range(40)}, (3, 7): "2"}
    assert (tmp_path / "confusion.png").stat().st_size > 0

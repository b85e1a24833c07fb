"""The documentation site builds strictly and its demo works in a real browser.

``mkdocs build --strict`` (a broken link, a missing page or an unresolvable API name fails it),
then the built site served on 127.0.0.1 and opened in headless Chromium: Debian's ``chromium``
and ``chromium-driver``, driven by Selenium pointed at ``/usr/bin/chromedriver`` (Selenium
Manager, which downloads browsers, is never used). Screenshots go to out/screenshots/.
Outside CI a missing browser or docs extra skips these tests; in CI (``CI`` set, where
.ci/run installs them) it fails them.
"""

from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.datasets import load_mnist

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "out" / "screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
IMAGES = 50


def require(available: bool, what: str) -> None:
    """Skip without ``what`` on a developer's machine; fail in CI, which must have it."""
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing: .ci/run installs it")
        pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(importlib.util.find_spec("mkdocs") is not None, "mkdocs (pip install -e '.[docs]')")
    require(shutil.which("npm") is not None or (ROOT / "docs/demo/node_modules").is_dir(),
            "npm (for onnxruntime-web)")
    site_dir = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                            str(site_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    return site_dir


def test_reference_documents_every_exported_name(site: Path):
    page = (site / "reference" / "xpnet" / "index.html").read_text()
    missing = [name for name in xpnet.__all__ if f'id="xpnet.{name}"' not in page]
    assert not missing


def test_home_page_is_the_readme(site: Path):
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "index.html").read_text()))
    headings = re.findall(r"^## (.+)$", (ROOT / "README.md").read_text(), re.M)
    assert headings and all(heading in page for heading in headings)
    page = (site / "index.html").read_text()
    assert 'href="training/"' in page  # README's docs/training.md, as a site link


def test_demo_assets_are_served_with_the_site(site: Path):
    for name in ("model.onnx", "demo.js", "ort/ort.wasm.min.js", "ort/ort-wasm-simd-threaded.wasm"):
        assert (site / "demo" / name).is_file(), name
    assert "cdn" not in (site / "demo" / "index.html").read_text().lower()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    require(CHROMIUM.is_file() and CHROMEDRIVER.is_file(),
            "Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    require(importlib.util.find_spec("selenium") is not None, "selenium (pip install -e '.[docs]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1200,1000",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def _open_demo(browser, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "demo/")
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "xpnet-status").text.startswith(("ready", "the model did not")))
    assert browser.find_element(By.ID, "xpnet-status").text.startswith("ready")


def test_browser_classifies_as_onnxruntime_does(browser, server: str, site: Path):
    import onnxruntime

    _, (x_test, _) = load_mnist()
    images = x_test[:IMAGES]
    session = onnxruntime.InferenceSession(str(site / "demo" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    scores = session.run(None, {session.get_inputs()[0].name: images})[0].astype(np.float64)
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)

    _open_demo(browser, server)
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(arguments[0].map((p) => window.xpnetClassify(p)))"
        "  .then(done, (e) => done({error: String(e)}));",
        images.tolist())
    assert not isinstance(result, dict), result
    got = np.asarray(result)
    assert got.shape == (IMAGES, 10)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_xpnet_classify_refuses_a_wrong_length(browser, server: str):
    _open_demo(browser, server)
    message = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.xpnetClassify([0, 1]).then(() => done('no error'), (e) => done(String(e)));")
    assert "784" in message


def test_drawing_a_digit_gives_a_prediction(browser, server: str):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open_demo(browser, server)
    canvas = browser.find_element(By.ID, "xpnet-canvas")
    # a "1": one stroke down the middle, as pointer events from the driver (offsets from the centre)
    ActionChains(browser).move_to_element_with_offset(canvas, 5, -100).click_and_hold() \
        .move_by_offset(-2, 50).move_by_offset(-2, 50).move_by_offset(-2, 50).move_by_offset(-2, 50) \
        .release().perform()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "xpnet-prediction").text != "–")
    bars = browser.find_elements(By.CSS_SELECTOR, "#xpnet-bars .xpnet-bar")
    probabilities = [float(bar.get_attribute("data-probability")) for bar in bars]
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-5)
    prediction = browser.find_element(By.ID, "xpnet-prediction").text
    assert prediction == str(int(np.argmax(probabilities)))
    assert prediction == "1"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "demo.png"))


def test_tutorial_first_figure_is_shown(browser, server: str):
    from selenium.webdriver.common.by import By

    browser.get(server + "tutorial/")
    figure = browser.find_element(By.CSS_SELECTOR, "article img")
    assert re.search(r"figures/apple_graph\.png$", figure.get_attribute("src"))
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", figure) > 100
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", figure)  # clear of the sticky header
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    figure.screenshot(str(SCREENSHOTS / "tutorial_figure.png"))


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "python -m pytest" in line and "pip install" in line)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_torch_requirements_take_the_cpu_build_on_linux():
    """PyPI's Linux torch is the CUDA build; the README installs only the +cpu one there."""
    from packaging.requirements import Requirement

    lines = (ROOT / ".ci" / "torch-cpu.txt").read_text().splitlines()
    assert "--find-links https://download.pytorch.org/whl/cpu/torch/" in lines
    torch = [Requirement(line) for line in lines if line.startswith("torch")]
    on_linux = [r for r in torch if r.marker is None or r.marker.evaluate({"sys_platform": "linux"})]
    elsewhere = [r for r in torch if r.marker is None or r.marker.evaluate({"sys_platform": "darwin"})]
    assert len(on_linux) == 1 and len(elsewhere) == 1
    assert on_linux[0].specifier.contains("2.13.0+cpu") and not on_linux[0].specifier.contains("2.13.0")
    assert not on_linux[0].specifier.contains("2.13.0+cu128")
    assert elsewhere[0].specifier.contains("2.13.0")


def _build_with(tmp_path: Path, page: str, text: str) -> None:
    """Build the site strictly, in this process, from a copy of docs/ with one page added."""
    require(importlib.util.find_spec("mkdocs") is not None, "mkdocs (pip install -e '.[docs]')")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("node_modules"))
    (docs / page).write_text(text)
    config = load_config(config_file=str(ROOT / "mkdocs.yml"), docs_dir=str(docs),
                         site_dir=str(tmp_path / "site"), strict=True)
    build(config)


@pytest.mark.parametrize("text, culprit", [
    ("# Broken\n\nSee [the missing page](no-such-page.md).\n", "no-such-page.md"),
    ("# Missing\n\n::: xpnet.NoSuchName\n", "xpnet.NoSuchName"),
])
def test_strict_build_fails_on_a_broken_link_or_a_missing_api_name(tmp_path, monkeypatch, caplog,
                                                                  text, culprit):
    from mkdocs.exceptions import Abort, PluginError

    monkeypatch.chdir(ROOT)  # mkdocs.yml names the Griffe extension by its path from here
    with pytest.raises((Abort, PluginError)):
        _build_with(tmp_path, "extra.md", text)
    assert culprit in caplog.text


def test_strict_build_of_a_copy_passes_with_a_good_page(tmp_path, monkeypatch):
    """The control for the test above: the same build, a page with a working link."""
    monkeypatch.chdir(ROOT)
    _build_with(tmp_path, "extra.md", "# Fine\n\nSee [the tutorial](tutorial.md) and `xpnet.Affine`.\n")
    assert (tmp_path / "site" / "extra" / "index.html").is_file()

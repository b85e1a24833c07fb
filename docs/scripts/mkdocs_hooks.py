"""MkDocs hooks: what the site makes from the repository at build time.

- the home page is README.md (one source: its ``docs/...`` links are rewritten to site pages);
- the API reference has one entry per name in ``xpnet.__all__`` and one page per public module
  of the package, so names and modules added later appear without editing this file;
- the nav lists the pages of docs/ in a reading order, then any page it does not know, so a
  new page needs no edit here to be on the site;
- the demo gets onnxruntime-web from docs/demo/node_modules (``npm ci``, run here when it is
  missing) and a model trained and exported by the ``xpnet`` command (cached in .cache/).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "docs" / "demo"
ORT_DIST = DEMO / "node_modules" / "onnxruntime-web" / "dist"
CACHE = ROOT / ".cache" / "docs-demo"
# the WebAssembly-only build of onnxruntime-web and the two files its loader fetches
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# pages the nav knows, in reading order; any other docs/*.md page follows them
GUIDES = ("backends.md", "layers.md", "training.md", "datasets.md", "export.md",
          "distributed.md", "performance.md")
# modules that hold the command line, not an API
NOT_API = {"__main__", "cli", "commands"}
# the demo's network: `xpnet train`'s default run (784-100-10, Adam, 10 epochs, seed 0; about 5 s)
DEMO_TRAIN = ("--device", "cpu", "--quiet")

log = logging.getLogger("mkdocs.hooks.xpnet")
sys.path.insert(0, str(ROOT))  # document this checkout's xpnet, not another installed copy


def api_modules() -> list[str]:
    """The public modules of the xpnet package: every one users can import."""
    import xpnet

    return sorted(m.name for m in pkgutil.iter_modules(xpnet.__path__)
                  if not m.name.startswith("_") and m.name not in NOT_API and not m.ispkg)


def home_page() -> str:
    """README.md as the site's home page: its links into docs/ point at the site's pages."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/([^)]+)\)", r"](\1)", text)


def reference_page() -> str:
    import xpnet

    xpnet = importlib.reload(xpnet)  # `mkdocs serve` rebuilds: names added since
    lines = ["# `xpnet`", "",
             "Every name in `xpnet.__all__`, in its order: what `import xpnet` gives. "
             "Each module's own page also lists what only that module exports.", ""]
    lines += [f"::: xpnet.{name}\n" for name in xpnet.__all__]
    return "\n".join(lines)


def module_page(module: str) -> str:
    return f"# `xpnet.{module}`\n\n::: xpnet.{module}\n    options:\n      show_root_heading: false\n"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    docs = Path(config.docs_dir)
    known = ("index.md", "tutorial.md", "demo.md", *GUIDES)
    guides = [page for page in GUIDES if (docs / page).is_file()]
    others = sorted(p.name for p in docs.glob("*.md") if p.name not in known)
    config.nav = [
        {"Home": "index.md"},
        {"Tutorial: chapter 5 on xpnet": "tutorial.md"},
        {"Demo: a digit in the browser": "demo.md"},
        {"Guides": guides + others},
        {"API reference": ["reference/xpnet.md"] + [f"reference/{m}.md" for m in api_modules()]},
    ]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    generated = {"index.md": home_page(), "reference/xpnet.md": reference_page()}
    generated.update({f"reference/{m}.md": module_page(m) for m in api_modules()})
    for uri, content in generated.items():
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"docs/{uri} is made from the sources at build time: delete docs/{uri}")
        files.append(File.generated(config, uri, content=content))
    return files


def on_post_build(config: MkDocsConfig, **kwargs: Any) -> None:
    site_demo = Path(config.site_dir) / "demo"
    ort = site_demo / "ort"
    ort.mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        shutil.copy2(_ort_dist() / name, ort / name)
    demo_model(site_demo / "model.onnx")


def _ort_dist() -> Path:
    if not all((ORT_DIST / name).is_file() for name in ORT_FILES):
        npm = shutil.which("npm")
        if npm is None:
            raise PluginError("the demo page needs onnxruntime-web from the npm registry and npm is "
                              "not installed: install Node.js and npm, then build again")
        log.info("installing onnxruntime-web (npm ci in docs/demo)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=DEMO, check=True)
    return ORT_DIST


def demo_model(path: Path) -> None:
    """Train the demo's network with ``xpnet train`` and write it with ``xpnet export``.

    The model is kept in .cache/docs-demo/ under a hash of xpnet's sources and the training
    options, so rebuilds (``mkdocs serve``) train again only after the code changed.
    """
    digest = hashlib.sha256(repr(DEMO_TRAIN).encode())
    for source in sorted((ROOT / "xpnet").rglob("*.py")):
        digest.update(source.read_bytes())
    cached = CACHE / f"model-{digest.hexdigest()[:16]}.onnx"
    if not cached.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        _train_and_export(cached)
    shutil.copy2(cached, path)


def _train_and_export(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = str(Path(tmp) / "demo.npz")
        for args in (("train", *DEMO_TRAIN, "--save", checkpoint),
                     ("export", "--checkpoint", checkpoint, "--output", str(Path(tmp) / "demo.onnx"))):
            run = subprocess.run([sys.executable, "-m", "xpnet", *args], env=env, text=True,
                                 capture_output=True)
            if run.returncode != 0:
                raise PluginError(f"the demo's model: xpnet {args[0]} failed: {run.stderr.strip()}")
            log.info(run.stdout.strip().splitlines()[-1])
        shutil.move(Path(tmp) / "demo.onnx", path)  # only a complete model enters the cache

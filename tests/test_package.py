"""Package surface: light import, lazy model-facing names, typed markers shipped."""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import qstar_native


def test_import_does_not_load_torch():
    code = "import sys, qstar_native; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_names_resolve_and_unknown_names_raise():
    assert qstar_native.HFPolicy.__name__ == "HFPolicy"
    assert callable(qstar_native.evaluate)
    try:
        qstar_native.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("unknown attribute did not raise")
    assert set(qstar_native.__all__) <= set(dir(qstar_native)) | set(qstar_native._LAZY)


def test_typing_marker_stub_and_data_are_installed():
    root = importlib.resources.files("qstar_native")
    assert (root / "py.typed").is_file() and (root / "_core.pyi").is_file()
    assert (root / "data" / "gsm_symbolic" / "eng" / "replacements.json").is_file()
    assert importlib.util.find_spec("qstar_native.kernels.qhead") is not None  # kernels/ is packaged


def test_shipped_data_names_no_path_of_the_machine_that_made_it():
    # Reports and logs shipped with the default name files, never absolute paths (issue 14).
    root = importlib.resources.files("qstar_native") / "data"
    texts = [p.read_text(encoding="utf-8") for d in ("default_policy", "default_qvm") for p in (root / d).iterdir() if p.name.endswith((".json", ".md"))]
    assert texts and not any(re.search(r'"/(work|home|tmp|root|Users)/', t) for t in texts)


def test_shipped_records_name_no_path_of_the_machine_that_made_it():
    # bench/results holds the records behind the README's tables; their settings name "default"
    # or a file name, never where the run happened.
    results = Path(__file__).parents[1] / "bench" / "results"
    files = sorted(results.glob("*.gz"))
    assert len(files) >= 10
    for f in files:
        assert not re.search(r'"/(work|home|tmp|root|Users)/', gzip.decompress(f.read_bytes()).decode("utf-8")), f.name

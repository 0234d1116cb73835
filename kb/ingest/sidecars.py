"""Metadata given beside the documents: metadata.csv rows and '<file>.meta.json' sidecars, read and checked.

Values are checked where they enter (a date must be a date, a status one of the known ones), and every value
is capped in size, so one bad row or sidecar skips its own document with a reason and nothing else.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from kb import config
from kb.errors import IngestError

log = logging.getLogger(__name__)

# One metadata value (title, issuer, a front-matter field): longer ones are cut to this many characters, which
# keeps every stored field within Milvus's VARCHAR limits (issuer: 2,048 bytes) on both backends alike.
MAX_META_CHARS = 500
# A front-matter value kept in the record's extra fields (a URL, a summary): longer ones are cut; the record as a
# whole is bounded by MAX_META_JSON.
MAX_EXTRA_CHARS = 10_000
# A level is a short category name ('法律', 'commentary'); Milvus stores it in 256 bytes.
MAX_LEVEL_CHARS = 60
# The whole metadata record as JSON, in UTF-8 bytes: Milvus keeps it in one 65,535-byte VARCHAR.
MAX_META_JSON = 60_000
LANGS = ("zh", "en")
DATE_FIELDS = ("published", "effective")
# kb.timeline.VALIDITY, spelled out here to keep this module free of the search side's imports.
VALIDITY = ("现行有效", "已修改", "已废止", "尚未生效")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOT_A_VALUE = {"nan", "none", "null", "n/a", "na", "-", "undefined"}


def check_inside(root: Path, path: Path) -> None:
    """Refuse symlinks that leave the corpus folder.

    Raises:
        IngestError: path resolves outside root, or is a broken link.
    """
    try:
        real = path.resolve(strict=True)
    except RuntimeError as exc:  # Python < 3.13 reports a link loop this way
        raise IngestError(path.name, "unreadable (Too many levels of symbolic links)") from exc
    except OSError as exc:
        raise IngestError(path.name, f"unreadable ({exc.strerror or exc})") from exc
    if not real.is_relative_to(root.resolve()):
        raise IngestError(path.name, "link points outside the corpus folder; not followed")


def cap(value: str, limit: int = MAX_META_CHARS) -> str:
    """A metadata value on one line, without control characters, at most `limit` characters."""
    flat = " ".join(_CONTROL.sub(" ", value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def cap_extra(value: str) -> str:
    """An extra (front-matter) value at most MAX_EXTRA_CHARS characters, otherwise as written."""
    return value if len(value) <= MAX_EXTRA_CHARS else value[: MAX_EXTRA_CHARS - 1] + "…"


def check_values(values: dict[str, str], source: str) -> dict[str, str]:
    """Metadata values from a sidecar or metadata.csv, checked and capped.

    Raises:
        IngestError: a date that is not a calendar date (YYYY-MM-DD), an unknown status or language, or a level
            that is no name; the message names the source, the field and the value.
    """
    out: dict[str, str] = {}
    for key, raw in values.items():
        key = cap(str(key), 100)
        value = cap(str(raw), MAX_LEVEL_CHARS if key == "level" else MAX_META_CHARS)
        if not key or not value:
            continue
        shown = cap(value, 40)
        if key in DATE_FIELDS and not _is_date(value):
            raise IngestError(source, f"{key} '{shown}' is not a date: write YYYY-MM-DD")
        if key == "validity" and value not in VALIDITY:
            raise IngestError(source, f"validity '{shown}' is not one of {', '.join(VALIDITY)}")
        if key == "lang" and value not in LANGS:
            raise IngestError(source, f"lang '{shown}' is not one of {', '.join(LANGS)}")
        if key == "level" and (value.lower() in _NOT_A_VALUE or re.search(r"[<>{}\[\]\\]", value)):
            raise IngestError(source, f"level '{shown}' is not a level name (法律, 行政法规, 部门规章, commentary ...)")
        out[key] = value
    return out


def _is_date(value: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        return datetime.date.fromisoformat(value).year >= 1000
    except ValueError:
        return False


def load_sidecars(root: Path) -> dict[str, dict[str, str]]:
    """Read the corpus-level metadata.csv (doc_id plus any DocMeta / title column), if any.

    Any encoding an office saves (UTF-8, GBK from Excel on Chinese Windows, UTF-16) is read. A row whose values
    fail check_values keeps its problem under the key '!error', and the build skips that document with it;
    a metadata.csv that cannot be read at all is logged and ignored.
    """
    from kb.ingest.formats import decode

    csv_path = root / "metadata.csv"
    try:
        check_inside(root, csv_path)
        if not csv_path.is_file():
            return {}
        if csv_path.stat().st_size > config.MAX_FILE_BYTES:
            raise IngestError("metadata.csv", f"over the {config.MAX_FILE_BYTES // 2**20} MB limit")
        text, _ = decode(csv_path.read_bytes(), "metadata.csv")
    except (IngestError, OSError) as exc:
        if csv_path.exists() or csv_path.is_symlink():
            log.warning("metadata.csv ignored: %s", exc)
        return {}
    table: dict[str, dict[str, str]] = {}
    limit = csv.field_size_limit()
    csv.field_size_limit(config.MAX_FILE_BYTES)  # a huge cell is capped below, not an error that ends the read
    try:
        for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            doc_id = str(row.pop("doc_id", "") or "").strip()
            if not doc_id:
                continue
            cells = {str(k): str(v) for k, v in row.items() if k and isinstance(v, str) and v.strip()}
            try:
                table[doc_id] = check_values(cells, f"metadata.csv line {line}")
            except IngestError as exc:
                table[doc_id] = {"!error": str(exc)}
    except csv.Error as exc:
        log.warning("metadata.csv: rows after a malformed one ignored (%s)", exc)
    finally:
        csv.field_size_limit(limit)
    return table


def read_sidecar(path: Path, root: Path | None = None) -> dict[str, str]:
    """Read '<file>.meta.json' beside a document, if present, checked as check_values.

    Raises:
        IngestError: the sidecar links out of the corpus, is not a JSON object, or holds a bad value.
    """
    side = path.with_name(path.name + ".meta.json")
    if not (side.is_file() or side.is_symlink()):
        return {}
    check_inside(root if root is not None else path.parent, side)
    if not side.is_file():
        raise IngestError(side.name, "sidecar is not a regular file")
    if side.stat().st_size > config.MAX_FILE_BYTES:
        raise IngestError(side.name, f"sidecar is over the {config.MAX_FILE_BYTES // 2**20} MB limit")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise IngestError(side.name, f"sidecar is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IngestError(side.name, "sidecar must hold a JSON object")
    return check_values({str(k): str(v) for k, v in data.items() if v is not None}, side.name)


def fit_json(extra: dict[str, str], fixed: Mapping[str, object]) -> dict[str, str]:
    """Drop the longest extra values until the whole record fits MAX_META_JSON (Milvus's limit) as JSON."""
    size = len(json.dumps({**fixed, "extra": extra}, ensure_ascii=False).encode())
    if size <= MAX_META_JSON:
        return extra
    kept = dict(extra)
    for key in sorted(kept, key=lambda k: -(len(kept[k]) + len(k))):
        if size <= MAX_META_JSON:
            break
        size -= len(json.dumps({key: kept.pop(key)}, ensure_ascii=False).encode()) - 1  # the pair and its comma
    log.warning("%d metadata fields dropped: the record was over %d bytes", len(extra) - len(kept), MAX_META_JSON)
    return kept

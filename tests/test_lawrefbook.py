"""scripts/import_lawrefbook.py and kb/lawrefbook.py on a tiny fake LawRefBook checkout (and once on the real one)."""

from __future__ import annotations

import csv
import importlib.util
import io
import sqlite3
import tarfile
from datetime import date
from pathlib import Path

import pytest

from kb.ingest import lawrefbook as lrb

ROOT = Path(__file__).resolve().parent.parent
REAL_TARBALL = Path("/work/shared/corpora/lawrefbook/laws.tar.xz")

_spec = importlib.util.spec_from_file_location("import_lawrefbook", ROOT / "scripts" / "import_lawrefbook.py")
assert _spec and _spec.loader
importer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(importer)

# The real db.sqlite3 schema (sqlite3 db.sqlite3 .schema), so the fake cannot drift from it silently.
SCHEMA = """
CREATE TABLE law (id TEXT NOT NULL PRIMARY KEY, level TEXT NOT NULL, name TEXT NOT NULL, filename TEXT,
  publish DATE, expired INTEGER NOT NULL, "order" integer, subtitle TEXT, valid_from DATE, ver INTEGER,
  tags TEXT, category_id TEXT NOT NULL);
CREATE TABLE category (id TEXT NOT NULL UNIQUE PRIMARY KEY, name TEXT NOT NULL, folder TEXT NOT NULL,
  isSubFolder INTEGER NOT NULL, "group" TEXT, "order" integer);
"""


def make_db(path: Path, categories: dict[str, str], laws: list[tuple]) -> None:
    """categories: folder -> name; laws: (level, name, subtitle, publish, valid_from, expired, folder[, filename])."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for n, (folder, name) in enumerate(categories.items()):
        con.execute("INSERT INTO category VALUES (?, ?, ?, 0, NULL, ?)", (f"c{n}", name, folder, n))
    cat_id = {folder: f"c{n}" for n, folder in enumerate(categories)}
    for n, (level, name, subtitle, publish, valid_from, expired, folder, *filename) in enumerate(laws):
        con.execute(
            "INSERT INTO law (id, level, name, filename, publish, expired, subtitle, valid_from, ver, "
            "category_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            (f"l{n}", level, name, (filename or [None])[0], publish, expired, subtitle, valid_from, cat_id[folder]),
        )
    con.commit()
    con.close()


def law_md(title: str, body: str = "第一条 测试。") -> str:
    return (
        f"# {title}\n\n2018年10月26日 第十三届全国人民代表大会常务委员会第六次会议修正\n\n<!-- INFO END -->\n\n{body}\n"
    )


FILES = {
    "民法商法/公司法(2018-10-26).md": law_md("中华人民共和国公司法"),
    "民法商法/公司法(2023-12-29).md": law_md("中华人民共和国公司法"),
    "民法商法/_index.md": "---\nbookCollapseSection: true\n---\n",
    "经济法/价格法(1997-12-29).md": law_md("中华人民共和国价格法"),
    "经济法/公司法(2023-12-29).md": law_md("中华人民共和国公司法"),  # same law filed twice, as upstream does
    "行政法规/旧条例.md": law_md("旧条例"),
    "行政法规/新条例(2999-01-01).md": law_md("新条例"),
    "行政法规/孤儿条例.md": law_md("孤儿条例"),  # no db row
    "民法典/合同编.md": "# 中华人民共和国民法典\n\n# 合同编\n\n<!-- INFO END -->\n\n第四百六十三条 测试。\n",
    "案例/消费购物/张某诉某公司买卖合同纠纷案.md": "# 张某诉某公司买卖合同纠纷案\n\n<!-- INFO END -->\n\n案情。\n",
    "法律法规模版.md": "# 某条法律的标题\n",
    "README.md": "本项目收集各类法律法规。\n",
    "DLC/上海地方法规/地方性法规/上海/上海市测试条例(2020-05-14).md": law_md("上海市测试条例"),
    "DLC/上海地方法规/地方性法规/上海/_index.md": "---\n---\n",
}
ROOT_LAWS = [
    ("法律", "公司法", None, "2018-10-26", "2018-10-26", 1, "民法商法"),
    ("法律", "公司法", None, "2023-12-29", "2024-07-01", 0, "民法商法"),
    ("法律", "价格法", None, "1997-12-29", "1998-05-01", 0, "经济法"),
    ("行政法规", "旧条例", None, None, None, 1, "行政法规"),
    ("行政法规", "新条例", None, "2999-01-01", "2999-06-01", 0, "行政法规"),
    ("行政法规", "失踪条例", None, "2001-01-01", None, 0, "行政法规"),  # no file
    ("法律", "民法典 合同编", None, None, None, 0, "民法典", "合同编"),  # upstream sets filename only here
    ("案例", "经营者应退一赔三", "张某诉某公司买卖合同纠纷案", None, None, 0, "案例/消费购物"),
]
ROOT_CATEGORIES = {
    "民法商法": "民法商法",
    "经济法": "经济法",
    "行政法规": "行政法规",
    "民法典": "民法典",
    "案例/消费购物": "消费购物",
}
HEADER = "doc_id,title,level,issuer,doc_number,published,effective,validity,region,category,source"
ROWS_NATIONAL = [
    "民法典/合同编.md,中华人民共和国民法典 合同编,法律,,,,,现行有效,,民法典,LawRefBook",
    "民法商法/公司法(2018-10-26).md,中华人民共和国公司法,法律,,,2018-10-26,2018-10-26,已修改,,民法商法,LawRefBook",
    "民法商法/公司法(2023-12-29).md,中华人民共和国公司法,法律,,,2023-12-29,2024-07-01,现行有效,,民法商法,LawRefBook",
    "经济法/价格法(1997-12-29).md,中华人民共和国价格法,法律,,,1997-12-29,1998-05-01,现行有效,,经济法,LawRefBook",
    "经济法/公司法(2023-12-29).md,中华人民共和国公司法,法律,,,2023-12-29,2024-07-01,现行有效,,经济法,LawRefBook",
    "行政法规/新条例(2999-01-01).md,新条例,行政法规,,,2999-01-01,2999-06-01,尚未生效,,行政法规,LawRefBook",
    "行政法规/旧条例.md,旧条例,行政法规,,,,,已废止,,行政法规,LawRefBook",
]
ROW_LOCAL = (
    "DLC/上海地方法规/地方性法规/上海/上海市测试条例(2020-05-14).md,上海市测试条例,地方性法规,,,2020-05-14,"
    "2020-07-01,现行有效,上海,上海,LawRefBook"
)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fake LawRefBook/Laws checkout with a root db and one DLC db."""
    root = tmp_path / "Laws"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    make_db(root / "db.sqlite3", ROOT_CATEGORIES, ROOT_LAWS)
    make_db(
        root / "DLC/上海地方法规/db.sqlite3",
        {"地方性法规/上海": "上海"},
        [("地方性法规", "上海市测试条例", None, "2020-05-14", "2020-07-01", 0, "地方性法规/上海")],
    )
    return root


def make_tarball(folder: Path, archive: Path, extra: tarfile.TarInfo | None = None) -> Path:
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(folder, arcname="Laws-main")  # GitHub tarballs wrap the checkout in one folder
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size) if extra.isreg() else None)
    return archive


def corpus_files(dest: Path) -> set[str]:
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = importer.main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_folder_import_copies_laws_and_writes_metadata(checkout: Path, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "corpus" / "lawrefbook"
    code, err = run([checkout, dest], capsys)
    assert code == 0, err
    laws = {
        "民法商法/公司法(2018-10-26).md",
        "民法商法/公司法(2023-12-29).md",
        "经济法/价格法(1997-12-29).md",
        "经济法/公司法(2023-12-29).md",
        "行政法规/旧条例.md",
        "行政法规/新条例(2999-01-01).md",
        "行政法规/孤儿条例.md",
        "民法典/合同编.md",
        "DLC/上海地方法规/地方性法规/上海/上海市测试条例(2020-05-14).md",
    }
    assert corpus_files(dest) == laws | {"metadata.csv", "README.md"}
    assert (dest / "民法典/合同编.md").read_bytes() == (checkout / "民法典/合同编.md").read_bytes()
    lines = (dest / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert lines == [HEADER, ROW_LOCAL, *ROWS_NATIONAL]
    assert "copied 9 Markdown files" in err
    assert "skipped 2: folder stub (_index.md)" in err
    assert "skipped 1: case under 案例/ (use --include-cases)" in err
    assert "skipped 1: template (法律法规模版.md)" in err and "skipped 1: README-type note" in err
    assert "metadata rows: 8 of 9 files (1 matched on name+date in another folder)" in err
    assert "no db row: 行政法规/孤儿条例.md" in err
    assert "db row without a file: 行政法规/失踪条例 (2001-01-01)" in err
    readme = (dest / "README.md").read_text(encoding="utf-8")
    assert lrb.UPSTREAM_COMMIT in readme and "art. 5" in readme and "Markdown documents copied: 9" in readme
    assert not list(dest.parent.glob(".lawrefbook.partial-*"))


def test_national_only_and_cases(checkout: Path, tmp_path: Path, capsys) -> None:
    national, cases = tmp_path / "national", tmp_path / "cases"
    assert run([checkout, national, "--national-only"], capsys)[0] == 0
    assert not any(f.startswith("DLC/") for f in corpus_files(national))
    lines = (national / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert lines == [HEADER, *ROWS_NATIONAL]
    assert run([checkout, cases, "--include-cases"], capsys)[0] == 0
    case = "案例/消费购物/张某诉某公司买卖合同纠纷案.md"
    assert case in corpus_files(cases)
    rows = {r["doc_id"]: r for r in csv.DictReader((cases / "metadata.csv").open(encoding="utf-8"))}
    assert (rows[case]["title"], rows[case]["level"], rows[case]["category"]) == (
        "张某诉某公司买卖合同纠纷案",
        "案例",
        "消费购物",
    )


def test_tarball_import_matches_folder_import(checkout: Path, tmp_path: Path, capsys) -> None:
    archive = make_tarball(checkout, tmp_path / "laws.tar.xz")
    from_folder, from_tar = tmp_path / "a", tmp_path / "b"
    assert run([checkout, from_folder], capsys)[0] == 0
    assert run([archive, from_tar], capsys)[0] == 0
    assert corpus_files(from_tar) == corpus_files(from_folder)
    assert (from_tar / "metadata.csv").read_bytes() == (from_folder / "metadata.csv").read_bytes()


@pytest.mark.parametrize(
    "name, kind, target",
    [
        ("../evil.md", tarfile.REGTYPE, ""),
        ("Laws-main/../../evil.md", tarfile.REGTYPE, ""),
        ("/tmp/evil.md", tarfile.REGTYPE, ""),
        ("Laws-main/link.md", tarfile.SYMTYPE, "../../../etc/passwd"),
        ("Laws-main/abs-link.md", tarfile.SYMTYPE, "/etc/passwd"),
    ],
)
def test_unsafe_tarball_is_refused_whole(
    checkout: Path, tmp_path: Path, capsys, name: str, kind: bytes, target: str
) -> None:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.size = kind, target, (0 if target else 4)
    archive = make_tarball(checkout, tmp_path / "evil.tar.xz", member)
    code, err = run([archive, tmp_path / "out" / "dest"], capsys)
    assert code == 1
    assert err.startswith(f"error: {archive}: unsafe member (") and err.endswith(
        "refusing to extract anything from it\n"
    )
    assert name.rsplit("/", 1)[-1] in err and err.count("\n") == 1
    assert not (tmp_path / "evil.md").exists() and not (tmp_path / "out").exists()


def test_bad_input_messages(checkout: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.tar.xz"
    assert run([missing, tmp_path / "d"], capsys) == (
        1,
        f"error: SOURCE {missing} does not exist: pass a LawRefBook/Laws checkout or laws.tar.xz\n",
    )
    text = tmp_path / "laws.txt"
    text.write_text("not a tarball", encoding="utf-8")
    code, err = run([text, tmp_path / "d"], capsys)
    assert code == 1 and err.startswith(f"error: {text} is not a readable .tar, .tar.gz or .tar.xz archive (")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run([empty, tmp_path / "d"], capsys) == (
        1,
        f"error: {empty} has no db.sqlite3 at its top: pass a LawRefBook/Laws checkout or its tarball\n",
    )
    assert not (tmp_path / "d").exists()


def test_dest_rules(checkout: Path, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me", encoding="utf-8")
    assert run([checkout, dest], capsys) == (
        1,
        f"error: DEST {dest} exists and is not empty: pass --force to replace it\n",
    )
    code, err = run([checkout, dest, "--force"], capsys)
    assert code == 1 and "was not written by import_lawrefbook.py; refusing to replace it even with --force" in err
    assert (dest / "mine.txt").read_text(encoding="utf-8") == "keep me"
    inside = checkout / "out"
    code, err = run([checkout, inside], capsys)
    assert (
        code == 1 and err == f"error: DEST {inside} and SOURCE {checkout} overlap: choose a DEST outside the source\n"
    )

    code, err = run([checkout, checkout.parent, "--force"], capsys)  # refused before anything is deleted
    assert code == 1 and checkout.is_dir()
    corpus = tmp_path / "corpus"
    assert run([checkout, corpus], capsys)[0] == 0
    (corpus / "stale.md").write_text("old", encoding="utf-8")
    assert run([checkout, corpus, "--national-only"], capsys)[0] == 1
    assert run([checkout, corpus, "--national-only", "--force"], capsys)[0] == 0
    files = corpus_files(corpus)
    assert "stale.md" not in files and not any(f.startswith("DLC/") for f in files)


def test_validity_rules() -> None:
    def rec(publish: str | None, valid_from: str | None = None, expired: bool = False) -> lrb.LawRecord:
        return lrb.LawRecord(
            name="法",
            subtitle=None,
            filename=None,
            level="法律",
            publish=publish,
            valid_from=valid_from,
            expired=expired,
            category="",
            folder="",
            db_folder="",
            region=None,
        )

    today = date(2025, 1, 1)
    old, new, future = rec("2018-01-01", expired=True), rec("2023-01-01", "2024-01-01"), rec("2024-12-01", "2025-06-01")
    assert lrb.validity_of(old, [old, new], today) == "已修改"
    assert lrb.validity_of(new, [old, new], today) == "现行有效"
    # Upstream marks the old version expired as soon as the new one is filed; it is in force until then.
    assert lrb.validity_of(new, [new, future], today) == "现行有效"
    assert lrb.validity_of(future, [new, future], today) == "尚未生效"
    assert lrb.validity_of(rec(None, expired=True), [rec(None, expired=True)], today) == "已废止"
    assert lrb.validity_of(rec(None), [rec(None), new], today) == ""


@pytest.mark.slow
@pytest.mark.skipif(not REAL_TARBALL.is_file(), reason="shared LawRefBook tarball not present")
def test_real_tarball_national_only(tmp_path: Path, capsys) -> None:
    dest = tmp_path / "lawrefbook-national"
    code, err = run([REAL_TARBALL, dest, "--national-only"], capsys)
    assert code == 0, err
    docs = [f for f in corpus_files(dest) if f.endswith(".md") and f != "README.md"]
    # Every Markdown file outside DLC/ and 案例/ except _index.md stubs, the template and README.md: 1,512 at
    # commit 2f4c5c2. (The "about 1,570" quoted for STARD counts 案例/ too: 1,566 files.)
    assert abs(len(docs) - 1512) <= 5
    rows = list(csv.DictReader((dest / "metadata.csv").open(encoding="utf-8")))
    assert len(rows) >= 0.95 * len(docs)
    assert {r["doc_id"] for r in rows} <= set(docs)
    assert all(r["validity"] in {"现行有效", "已修改", "已废止", "尚未生效", ""} for r in rows)

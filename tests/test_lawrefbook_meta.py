"""The real LawRefBook corpus: every sampled document carries its db.sqlite3 row's level, dates and validity;
repealed texts are hidden unless asked for, and as-of search picks the version in force."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import pytest

from kb.embed.models import HashingEmbedder
from kb.index.build import build
from kb.ingest import lawrefbook as lrb
from kb.ingest.read import read_document
from kb.ingest.sidecars import load_sidecars
from kb.search.searcher import Searcher

ROOT = Path(__file__).resolve().parent.parent
TARBALL = ROOT.parent / "shared" / "corpora" / "lawrefbook" / "laws.tar.xz"
COMPANY_LAW = ("民法商法/公司法(2018-10-26).md", "民法商法/公司法(2023-12-29).md")
SAMPLE_EVERY = 150  # every 150th imported file (23 of 3,423, national and local) plus the cases below

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TARBALL.is_file(), reason=f"LawRefBook tarball not at {TARBALL} (../shared)"),
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, lrb.ImportPlan, list[str]]:
    """The whole tarball imported as scripts/import_lawrefbook.py does, and the sampled doc_ids."""
    work = tmp_path_factory.mktemp("lawrefbook")
    lrb.extract_tarball(TARBALL, work / "checkout")
    root = lrb.find_root(work / "checkout")
    plan = lrb.plan_import(root)
    dest = work / "corpus"
    rows = lrb.copy_documents(root, dest, plan, date.today())
    lrb.write_metadata(dest / "metadata.csv", rows)
    shutil.rmtree(work / "checkout")
    with (dest / "metadata.csv").open(encoding="utf-8") as fh:
        validity = {r["doc_id"]: r["validity"] for r in csv.DictReader(fh)}
    ids = sorted(plan.matched)
    repealed = next(d for d in ids if validity[d] == "已废止" and not d.startswith("DLC/"))
    sample = sorted({*ids[::SAMPLE_EVERY], *COMPANY_LAW, repealed})
    return dest, plan, sample


def test_sampled_documents_carry_their_db_row(imported: tuple[Path, lrb.ImportPlan, list[str]]) -> None:
    dest, plan, sample = imported
    sidecars = load_sidecars(dest)
    versions: dict[tuple[str, str], list[lrb.LawRecord]] = {}
    for record in plan.records:
        versions.setdefault((record.db_folder, record.name), []).append(record)
    assert len(sample) >= 20 and any(d.startswith("DLC/") for d in sample)
    checked = 0
    for doc_id in sample:
        record = plan.matched[doc_id]
        meta = read_document(dest, doc_id, sidecars.get(doc_id)).meta
        assert meta.level == record.level, doc_id
        if record.publish:
            assert meta.published == record.publish, doc_id
        if record.valid_from:
            assert meta.effective == record.valid_from, doc_id
        expected = lrb.validity_of(record, versions[(record.db_folder, record.name)], date.today())
        assert (meta.validity or "") == expected, doc_id
        if record.region:  # local rules: the province of their DLC db
            assert meta.region == record.region, doc_id
        checked += 1
    assert checked == len(sample)


@pytest.fixture(scope="module")
def searcher(imported: tuple[Path, lrb.ImportPlan, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    """An index (BM25 + hashing vectors) of the sampled documents with their metadata rows."""
    dest, _, sample = imported
    corpus = tmp_path_factory.mktemp("sample") / "corpus"
    for doc_id in sample:
        (corpus / doc_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dest / doc_id, corpus / doc_id)
    with (
        (dest / "metadata.csv").open(encoding="utf-8") as src,
        (corpus / "metadata.csv").open("w", encoding="utf-8", newline="") as out,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, reader.fieldnames or [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in reader if r["doc_id"] in sample)
    index = tmp_path_factory.mktemp("index") / "index"
    report = build(corpus, index, {"dense": HashingEmbedder()}, cache_dir=None)
    assert not report.skipped
    return Searcher(index)


def test_repealed_text_hidden_by_default_and_shown_with_status(
    searcher: Searcher, imported: tuple[Path, lrb.ImportPlan, list[str]]
) -> None:
    _, plan, sample = imported
    repealed = next(d for d in sample if searcher.index.docs[d].meta.validity == "已废止")
    title = searcher.index.docs[repealed].title
    assert searcher.search(title, 5, docs=[repealed], mode="keyword") == []
    shown = searcher.search(title, 5, docs=[repealed], mode="keyword", include_repealed=True)
    assert shown and shown[0].meta.validity == "已废止" and shown[0].to_dict()["meta"]["validity"] == "已废止"
    assert shown[0].meta.level == plan.matched[repealed].level


def test_as_of_picks_the_company_law_version_in_force(searcher: Searcher) -> None:
    question = "公司 注册资本 股东 出资"
    now = {h.chunk.doc_id for h in searcher.search(question, 20, docs=list(COMPANY_LAW), mode="keyword")}
    assert now == {COMPANY_LAW[1]}  # the 2018 text is 已修改
    then = {
        h.chunk.doc_id
        for h in searcher.search(question, 20, docs=list(COMPANY_LAW), mode="keyword", as_of="2020-01-01")
    }
    assert then == {COMPANY_LAW[0]}
    # The 2023 revision took effect on 2024-07-01 (its 施行 article; the db leaves valid_from empty).
    assert searcher.index.spans[COMPANY_LAW[1]].start == "2024-07-01"
    assert searcher.index.spans[COMPANY_LAW[0]].end == "2024-07-01"
    levels = dict(searcher.facets().levels)
    assert levels["法律"] >= 2 and "地方性法规" in levels

"""What a Chinese legal text states about itself: dates, issuing body, document number, level, region.

Field meanings (the same for every source, so filters and as-of search compare like with like):
``published`` is the date of this version: the last 修正 / 修订 / 公布 line, else the 通过 line.
``effective`` is the date this version took effect: the 施行 line or "本法自…起施行" clause, unless a
修正 / 修订 dated later shows the text printed is a later version (the clause keeps the law's first
date), in which case the amendment date: most amending decisions take effect on promulgation.
``issuer`` is the body named in the history lines; when none is named it follows from the level
(行政法规 are the State Council's by definition; a local 地方性法规 is assumed to be its people's
congress standing committee's, which passes nearly all of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_EVENT_LINE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日[ \t\u3000]*(.*)$", re.M)
# 文号: 法释〔2022〕8号, 国发〔2021〕7号, 国家市场监督管理总局令第56号, 中华人民共和国国务院令第697号,
# 公告第78号. Brackets vary between 〔〕, [] and （）in the wild.
_DOC_NUMBER = re.compile(
    r"([\u4e00-\u9fa5]{1,12}[〔\[（(]\d{4}[〕\]）)]\s*第?\d+\s*号"
    r"|(?:中华人民共和国)?[\u4e00-\u9fa5]{2,20}?(?:令|公告)第\s*\d+\s*号)"
)
_PROVINCES = (
    "北京",
    "天津",
    "上海",
    "重庆",
    "河北",
    "山西",
    "辽宁",
    "吉林",
    "黑龙江",
    "江苏",
    "浙江",
    "安徽",
    "福建",
    "江西",
    "山东",
    "河南",
    "湖北",
    "湖南",
    "广东",
    "海南",
    "四川",
    "贵州",
    "云南",
    "陕西",
    "甘肃",
    "青海",
    "台湾",
    "内蒙古",
    "广西",
    "西藏",
    "宁夏",
    "新疆",
    "香港",
    "澳门",
)
_LOCAL_PREFIX = re.compile(
    r"^((?:" + "|".join(_PROVINCES) + r")(?:省|市|自治区|特别行政区)?"
    r"(?:[\u4e00-\u9fa5]{1,6}?(?:自治州|市|州|盟|地区|县|区))?)"
)
# "浙江省第十三届人民代表大会常务委员会第三十一次会议通过" -> 浙江省人民代表大会常务委员会
_SESSION_ISSUER = re.compile(
    r"^([\u4e00-\u9fa5]{0,12}?)(?:第[一二三四五六七八九十百]+届)?([\u4e00-\u9fa5]+?)第[一二三四五六七八九十百]+次(?:全体)?会议"
)
_ISSUER_REGION = re.compile(r"^(.{2,12}?(?:省|自治区|特别行政区|市|自治州|州|盟|县|区))人民(?:代表大会|政府)")
_ORDER_ISSUER = re.compile(r"^(?:中华人民共和国)?(.+?)(?:令|公告)第\s*\d+\s*号")
# "（2013年10月25日第十二届全国人民代表大会常务委员会第五次会议通过　根据…修正）" under a plain-text title.
_BODY_EVENT = re.compile(
    r"(\d{4})年(\d{1,2})月(\d{1,2})日([^　，；。（）()\d]{0,60}?(?:通过|公布|发布|施行|修正|修订|批准))"
)
# "…本条例自2021年3月1日起施行。《浙江省信息化促进条例》同时废止。" and lists whose titles are separated
# by their dates and numbers ("2000年…令第8号发布的《X》、2001年…发布的《Y》同时废止"): every title in the
# sentence that ends in 废止.
_REPEALS = re.compile(r"[^。\n]*?同时废止")
_TITLE_IN = re.compile(r"《([^《》\n]{2,60})》")
_AMEND_WORDS = ("修正", "修订", "修改")
_POLICY_WORDS = ("意见", "方案", "规划", "通知", "纲要", "计划", "指引", "指南", "决定", "公告", "办法（试行）")


@dataclass(frozen=True)
class Event:
    """One dated line of a law's history: 通过, 公布, 施行, 修正, 修订, 批准."""

    date: str  # ISO YYYY-MM-DD
    text: str


def iso_date(year: str | int, month: str | int, day: str | int) -> str | None:
    """Format a date as ISO, or None when it is not a real calendar date."""
    import datetime

    try:
        return datetime.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def find_iso_date(text: str) -> str | None:
    """The first 'YYYY年M月D日' in text, as ISO."""
    m = _DATE.search(text)
    return iso_date(*m.groups()) if m else None


def parse_events(header: str) -> tuple[Event, ...]:
    """Read the 'YYYY年M月D日 event' lines of a LawRefBook-style header."""
    return _events(_EVENT_LINE, header)


def body_events(head: str) -> tuple[Event, ...]:
    """History stated in the opening lines of a plain text: '（2013年10月25日…通过　根据…修正）'."""
    return _events(_BODY_EVENT, head)


def _events(pattern: re.Pattern[str], text: str) -> tuple[Event, ...]:
    """Dated events matched by pattern (groups: year, month, day, what happened); impossible dates left out."""
    events = []
    for m in pattern.finditer(text):
        date = iso_date(m.group(1), m.group(2), m.group(3))
        if date:
            events.append(Event(date, m.group(4).strip()))
    return tuple(events)


def repealed_titles(body: str) -> tuple[str, ...]:
    """Titles a text says it repeals ("《X》同时废止"), read from its closing part where 附则 state it."""
    found: list[str] = []
    for m in _REPEALS.finditer(body[-4000:]):
        found += [t for t in _TITLE_IN.findall(m.group(0)) if t not in found]
    return tuple(found)


def find_doc_number(text: str) -> str | None:
    """The first document number (文号) stated in text."""
    m = _DOC_NUMBER.search(text)
    return re.sub(r"\s+", "", m.group(1)) if m else None


def issuer_from_event(text: str) -> str | None:
    """The body named in an event line: 'X第N次会议通过' or 'X令第N号公布'."""
    m = _ORDER_ISSUER.match(text)
    if m:
        return _canonical_issuer(m.group(1))
    m = _SESSION_ISSUER.match(text)
    if m:
        return _canonical_issuer(m.group(1) + m.group(2))
    return None


def _canonical_issuer(name: str) -> str:
    name = re.sub(r"第[一二三四五六七八九十百]+届", "", name.strip())
    if name.startswith("中华人民共和国") and name != "中华人民共和国":
        name = name[len("中华人民共和国") :]
    return name


def region_of(title: str, issuer: str | None) -> str | None:
    """Province / city for local rules, from the title or the issuing body."""
    m = _ISSUER_REGION.match(issuer or "")
    if m:
        return m.group(1)
    m = _LOCAL_PREFIX.match(title)
    return m.group(1) if m else None


def level_of(title: str, issuer: str | None, doc_number: str | None) -> str | None:
    """The legal level: 法律 / 行政法规 / 部门规章 / 司法解释 / 地方性法规 / 地方政府规章 / 规范性文件."""
    issuer = issuer or ""
    number = doc_number or ""
    if title.startswith(("最高人民法院", "最高人民检察院")) or number.startswith(("法释", "高检发释")):
        return "司法解释"
    local = region_of(title, issuer) is not None
    if local and "人民代表大会" in issuer:
        return "地方性法规"
    if local and "人民政府" in issuer and "令" in number:
        return "地方政府规章"
    if "全国人民代表大会" in issuer or (title.startswith("中华人民共和国") and title.endswith("法")):
        return "法律"
    if issuer == "国务院" and title.endswith(("条例", "规定", "办法", "细则")):
        return "行政法规"
    if "令第" in number and not local:
        return "部门规章"
    if local and title.endswith(("条例", "规定")):
        return "地方性法规"
    # National 条例 are State Council regulations; the NPC's own acts are named 法 or 决定.
    if not local and title.endswith("条例"):
        return "行政法规"
    if any(word in title for word in _POLICY_WORDS):
        return "规范性文件"
    return None


def issuer_by_level(level: str | None, region: str | None) -> str | None:
    """The issuing body that a level implies when the text names none (module docstring)."""
    if level == "行政法规":
        return "国务院"
    if level == "地方性法规" and region:
        return f"{region}人民代表大会常务委员会"
    return None


def legal_meta(title: str, header: str, body: str) -> dict[str, str | None]:
    """Everything the text states about itself, as ISO dates and plain strings (None when unstated)."""
    head_of_body = body[:600]
    events = parse_events(header) or body_events(head_of_body[:300])
    doc_number = find_doc_number(header) or find_doc_number(head_of_body)
    issuer = None
    for event in events:
        issuer = issuer_from_event(event.text)
        if issuer:
            break
    if issuer is None:
        m = re.match(r"^(最高人民法院|最高人民检察院|国务院(?:办公厅)?|中共中央(?:办公厅)?)", title)
        issuer = m.group(1) if m else None
    published = next((e.date for e in reversed(events) if "公布" in e.text), None)
    adopted = next((e.date for e in events if "通过" in e.text), None)
    effective = next((e.date for e in reversed(events) if e.text.startswith("施行") or e.text.endswith("施行")), None)
    amended = max((e.date for e in events if any(w in e.text for w in _AMEND_WORDS)), default=None)
    if effective is None:
        m = re.search(r"自(\d{4}年\d{1,2}月\d{1,2}日)起施行", body[-3000:])
        effective = find_iso_date(m.group(1)) if m else None
    if amended and effective and amended > effective:
        effective = amended
    level = level_of(title, issuer, doc_number)
    region = region_of(title, issuer)
    return {
        "issuer": issuer or issuer_by_level(level, region),
        "doc_number": doc_number,
        "published": amended or published or adopted,
        "effective": effective,
        "level": level,
        "region": region,
    }


_VERSION_NOTE = re.compile(r"[（(]\d{4}[^（）()]{0,12}[）)]$")


def title_key(title: str) -> str:
    """A title as references and versions match it: no spaces or 《》, no 中华人民共和国 prefix, no '（2018修正）'.

    "《中华人民共和国消费者权益保护法》", "消费者权益保护法" and "消费者权益保护法（2013修正）" share one key;
    "（试行）" and "（一）" are part of a title and stay.
    """
    key = re.sub(r"[\s《》〈〉<>]", "", title)
    key = _VERSION_NOTE.sub("", key)
    if key.startswith("中华人民共和国") and len(key) > len("中华人民共和国"):
        key = key[len("中华人民共和国") :]
    return key

"""Label sheets on standard A4 stock: the layouts' geometry (measured on the PDF Chromium prints),
one label per pack, recalled lots held back, and the warning when printed QR codes would point
at a loopback address."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import segno

from shop.trace import labels, lots, producer, recall
from tests.conftest import login, make_test_app
from tests.shop.trace_factories import make_farm

PT_MM = 25.4 / 72


@pytest.fixture
def farm(session, make_user):
    farm = make_farm(session, planted_on=date(2026, 3, 1))
    producer.update(session, name="登封市赵庄村田园种植专业合作社", phone="0371-6200 0000")
    session.commit()
    make_user("kuaiji", "official")
    return farm


def _harvest(session, farm, quantity="80"):
    lot = lots.create_harvest_lot(
        session, farm.cycle, quantity, "kg", harvested_on=date(2026, 6, 20), product_id=farm.peach.id
    )
    session.commit()
    return lot


def _labels(html: str) -> list[str]:
    return re.findall(r'data-label="([^"]+)"', html)


# --- the layouts ----------------------------------------------------------------------------


def test_the_layouts_sit_where_the_stock_is_cut():
    l7160, l7163 = labels.LAYOUTS["L7160"], labels.LAYOUTS["L7163"]
    assert (l7160.per_sheet, l7163.per_sheet) == (21, 14)
    assert l7160.position(0) == (7.21, 15.15) and l7160.position(1) == (73.25, 15.15)
    assert l7160.position(3) == (7.21, 53.25) and l7160.position(20) == (139.29, 243.75)
    assert l7160.position(21) == l7160.position(0)  # the next sheet starts again at the top
    assert l7163.position(0) == (4.65, 15.15) and l7163.position(13) == (106.25, 243.75)
    for layout in (l7160, l7163):  # the grid is centred on A4, as the die-cut sheets are
        left, top = layout.position(0)
        right = 210 - (left + (layout.across - 1) * layout.pitch_x_mm + layout.width_mm)
        bottom = 297 - (top + (layout.down - 1) * layout.pitch_y_mm + layout.height_mm)
        assert abs(left - right) < 0.02 and abs(top - bottom) < 0.02
    assert labels.layout("l7163") is l7163 and labels.layout("nonsense") is l7160


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:5000", "loopback"),
        ("http://127.8.0.1", "loopback"),
        ("http://localhost:8000", "loopback"),
        ("http://[::1]:5000", "loopback"),
        ("http://0.0.0.0:5000", "unspecified"),
        ("", "unset"),
        ("https://trace.example.cn", None),
        ("http://192.168.1.20:5000", None),  # the village network: reachable from its phones
    ],
)
def test_which_public_addresses_would_print_dead_qr_codes(url, problem):
    assert labels.public_url_problem(url) == problem


def test_long_names_shrink_to_fit():
    short = labels.fit_scale([("黄桃", 10)], 33.5, 34)
    long = labels.fit_scale([("登封市赵庄村田园种植专业合作社精选有机锦绣黄桃礼盒装" * 2, 10)] * 3, 33.5, 34)
    assert short == 1.0 and long < short


# --- the page ---------------------------------------------------------------------------------


def test_a_packed_lot_prints_one_label_per_pack(client, session, farm):
    lot = _harvest(session, farm)
    packs = lots.split_lot(session, lot, ["5"] * 16)
    session.commit()
    login(client, "kuaiji")
    html = client.get(f"/trace/labels?lot={lot.id}").get_data(as_text=True)
    assert _labels(html) == [p.lot_number for p in packs]  # 16 labels, each its pack's number
    assert html.count("<svg") >= 16 and html.count('data-sheet="') == 1
    assert f'data-packed="{lot.lot_number}"' in html
    for pack in packs:  # each with its own code (its QR holds its Digital Link)
        assert pack.code in html
    wide = client.get(f"/trace/labels?lot={lot.id}&layout=L7163").get_data(as_text=True)
    assert len(_labels(wide)) == 16 and wide.count('data-sheet="') == 2  # 14 + 2
    assert 'data-left-mm="4.65" data-top-mm="15.15"' in wide
    assert "left:7.21mm;top:15.15mm;width:63.5mm;height:38.1mm" in html


def test_a_lot_without_packs_prints_its_own_label_once(client, session, farm):
    lot = _harvest(session, farm)
    login(client, "kuaiji")
    html = client.get(f"/trace/labels?lot={lot.id}&lot={lot.id}&copies=20").get_data(as_text=True)
    assert _labels(html) == [lot.lot_number]


def test_labels_of_a_recalled_lot_need_an_explicit_confirmation(client, session, farm):
    lot = _harvest(session, farm)
    packs = lots.split_lot(session, lot, ["10", "10"])
    recall.recall_lot(session, lot, "抽检农残超标")
    healthy = _harvest(session, farm, "20")
    session.commit()
    login(client, "kuaiji")
    html = client.get(f"/trace/labels?lot={lot.id}&lot={healthy.id}&lang=zh_CN").get_data(as_text=True)
    assert _labels(html) == [healthy.lot_number]  # the recalled packs are left off
    assert 'data-warning="recalled"' in html and "2 张已召回批次的标签未排入标签纸" in html
    confirm = re.search(r'data-confirm-recalled href="([^"]+)"', html).group(1).replace("&amp;", "&")
    confirmed = client.get(confirm).get_data(as_text=True)
    assert _labels(confirmed) == [p.lot_number for p in packs] + [healthy.lot_number]
    assert confirmed.count('class="recalled-mark"') == 2 and "已召回 · 不得销售" in confirmed
    assert 'data-warning="recalled-included"' in confirmed


def test_a_loopback_public_address_is_warned_about(app, client, session, farm, settings):
    lot = _harvest(session, farm)
    login(client, "kuaiji")
    html = client.get(f"/trace/labels?lot={lot.id}&lang=en").get_data(as_text=True)  # default 127.0.0.1
    assert 'data-warning="public-url"' in html and "http://127.0.0.1:5000" in html
    public = make_test_app(replace(settings, public_base_url="https://trace.example.cn"))
    with public.test_client() as other:
        login(other, "kuaiji")
        html = other.get(f"/trace/labels?lot={lot.id}").get_data(as_text=True)
    assert 'data-warning="public-url"' not in html and "https://trace.example.cn/t/" in html


def test_farmers_print_only_their_households_labels(client, session, farm, make_user):
    lot = _harvest(session, farm)
    make_user("stranger", "farmer")
    login(client, "stranger")
    assert client.get(f"/trace/labels?lot={lot.id}").status_code == 404


# --- measured on the printed page ----------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOOLS = [CHROMIUM, "pdftoppm", "pdftotext", "pdfinfo", "zbarimg"]
DPI = 300


def html_target(html: str, lot_number: str) -> str:
    """What a label's QR code holds (the Digital Link of its pack), as the page links it."""
    return "http://127.0.0.1:5000/01/06970000000017/10/" + lot_number


def _print_to_pdf(app, html: str, tmp_path: Path) -> Path:
    """The page as Chromium prints it: stylesheets inlined, no header or footer, A4."""
    static = Path(app.static_folder)

    def inline(match: re.Match) -> str:
        return "<style>" + (static / match.group(1)).read_text() + "</style>"

    html = re.sub(r'<link rel="stylesheet" href="/static/([^"?]+)[^"]*">', inline, html)
    html = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)
    page, pdf = tmp_path / "labels.html", tmp_path / "labels.pdf"
    page.write_text(html)
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return pdf


def _page_pixels(pdf: Path, tmp_path: Path) -> tuple[int, int, bytes]:
    """The first page rasterised in grey at ``DPI`` by pdftoppm: (width, height, pixels)."""
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-f", "1", "-l", "1", "-gray", str(pdf), str(tmp_path / "page")],
        check=True,
    )
    data = next(tmp_path.glob("page*.pgm")).read_bytes()
    magic, width, height, depth, pixels = re.match(
        rb"(P5)\s+(\d+)\s+(\d+)\s+(\d+)\s(.*)", data, re.S
    ).groups()
    assert magic == b"P5" and depth == b"255"
    return int(width), int(height), pixels


def _qr_at(page: tuple[int, int, bytes], window_mm: tuple[float, float, float, float], tmp_path: Path):
    """The QR code inside ``window_mm`` (left, top, right, bottom): the top-left corner (mm) of
    its dark modules, and what zbarimg reads from that part of the page alone."""
    width, _height, pixels = page
    px = DPI / 25.4
    x0, y0, x1, y1 = (round(v * px) for v in window_mm)
    rows = [pixels[y * width + x0 : y * width + x1] for y in range(y0, y1)]
    dark_rows = [i for i, row in enumerate(rows) if min(row) < 100]
    dark_cols = [j for j in range(x1 - x0) if any(row[j] < 100 for row in rows)]
    if not dark_rows:
        return None, ""
    crop = tmp_path / "crop.pgm"
    crop.write_bytes(b"P5 %d %d 255\n" % (x1 - x0, y1 - y0) + b"".join(rows))
    read = subprocess.run(
        ["zbarimg", "-q", "--raw", str(crop)], capture_output=True, text=True
    ).stdout.strip()
    return ((x0 + dark_cols[0]) / px, (y0 + dark_rows[0]) / px), read


def _words(pdf: Path) -> list[tuple[str, float, float, float, float]]:
    """(word, x0, y0, x1, y1) in mm on the first page, by pdftotext -bbox."""
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "1", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = []
    for attrs, text in re.findall(r"<word ([^>]*)>([^<]*)</word>", out):
        box = dict(re.findall(r'(\w+)="([\d.]+)"', attrs))
        words.append(
            (text, *(float(box[k]) * PT_MM for k in ("xMin", "yMin", "xMax", "yMax")))  # type: ignore[misc]
        )
    return words


@pytest.mark.slow
@pytest.mark.parametrize("layout_key", ["L7160", "L7163"])
def test_printed_labels_start_at_the_stocks_margins_and_keep_its_pitch(
    app, client, session, farm, tmp_path, layout_key
):
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make system-deps-test)")
    layout = labels.LAYOUTS[layout_key]
    farm.peach.name_zh = "登封市赵庄村田园种植专业合作社精选有机锦绣黄桃大果礼盒装（每盒十二枚）"
    farm.peach.name_en = "Selected organic Jinxiu yellow peaches, large fruit, gift pack of twelve"
    session.commit()
    from shop.trace import gtins

    body = "200000000001"  # restricted circulation: a 1 kg pack's own GTIN, so labels hold Digital Links
    gtins.set_gtin(session, farm.peach, "1 kg", body + gtins.check_digit(body), company_prefix="")
    lot = _harvest(session, farm)
    packs = lots.split_lot(session, lot, ["1"] * layout.per_sheet)
    session.commit()
    login(client, "kuaiji")
    html = client.get(f"/trace/labels?lot={lot.id}&layout={layout_key}&lang=zh_CN").get_data(as_text=True)
    pdf = _print_to_pdf(app, html, tmp_path)

    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert re.search(r"Page size:\s+59[45]\.\d+ x 841\.\d+ pts \(A4\)", info), info
    assert re.search(r"Pages:\s+1\b", info), info  # one full sheet, no spill-over page

    page = _page_pixels(pdf, tmp_path)
    modules = segno.make(html_target(html, packs[0].lot_number), error="m").symbol_size(border=0)[0]
    quiet = layout.qr_mm * 4 / (modules + 8)  # the SVG keeps a 4-module quiet zone
    symbol = layout.qr_mm - 2 * quiet
    offset_x = labels.PADDING_MM + quiet
    offset_y = (layout.height_mm - layout.qr_mm) / 2 + quiet  # the QR is centred vertically
    found = []
    for i, pack in enumerate(packs):  # every label's QR where the stock has that label
        left, top = layout.position(i)
        x, y = left + offset_x, top + offset_y
        corner, read = _qr_at(page, (x - 3, y - 3, x + symbol + 3, y + symbol + 3), tmp_path)
        assert read.endswith(f"/10/{pack.lot_number}"), (i, read)  # its own pack's code
        assert corner is not None
        assert abs(corner[0] - x) <= 0.5 and abs(corner[1] - y) <= 0.5, (i, corner, (x, y))
        found.append(corner)
    # the first label starts at the stock's margins, and the labels keep its pitch
    assert abs(found[0][1] - offset_y - layout.top_mm) <= 0.5
    assert abs(found[0][0] - offset_x - layout.side_mm) <= 0.5
    assert abs(found[1][0] - found[0][0] - layout.pitch_x_mm) <= 0.3
    assert abs(found[layout.across][1] - found[0][1] - layout.pitch_y_mm) <= 0.3
    assert abs(found[-1][1] - found[0][1] - (layout.down - 1) * layout.pitch_y_mm) <= 0.3

    # nothing crosses a label's edge: the bands along every cut (1.5 mm either side, inside the
    # labels' 2 mm padding) and the sheet's margins are blank, so long names wrapped or shrank
    # inside their labels; none spilled into the next one (nor was cut off by the printer)
    def blank(x0: float, y0: float, x1: float, y1: float) -> bool:
        width, _height, pixels = page
        px = DPI / 25.4
        a, b = max(0, round(x0 * px)), round(x1 * px)
        return all(
            min(pixels[y * width + a : y * width + b]) >= 100 for y in range(round(y0 * px), round(y1 * px))
        )

    band = 1.5
    last_left, last_top = layout.position(layout.per_sheet - 1)
    right, bottom = last_left + layout.width_mm, last_top + layout.height_mm
    assert blank(0, 0, 210, layout.top_mm + band) and blank(0, bottom - band, 210, 297)
    assert blank(0, 0, layout.side_mm + band, 297) and blank(right - band, 0, 210, 297)
    for row in range(1, layout.down):
        cut = layout.top_mm + row * layout.pitch_y_mm
        assert blank(0, cut - band, 210, cut + band), f"text crosses the cut above row {row + 1}"
    for col in range(1, layout.across):
        left = layout.side_mm + col * layout.pitch_x_mm
        assert blank(left - (layout.pitch_x_mm - layout.width_mm) - band, 0, left + band, 297), col

    # and every label carries the whole of the long name, inside its own column
    words = _words(pdf)
    assert words
    for text, x0, _y0, x1, _y1 in words:
        assert any(
            b - 0.3 <= x0 and x1 <= b + layout.width_mm + 0.3
            for b in (layout.side_mm + c * layout.pitch_x_mm for c in range(layout.across))
        ), (text, x0, x1)
    printed = "".join(text for text, *_ in words)
    assert printed.count("每盒十二") == layout.per_sheet  # the end of the long name, on every label


def test_a_lot_counted_in_pieces_gets_a_label_per_piece(client, session, farm):
    """Found by review: 60 bags of millet printed one label. A lot counted in pieces gets one
    per piece it still holds, each with the lot's number; a lot weighed in kg stays one."""
    boxes = lots.create_harvest_lot(session, farm.cycle, "4", "box", harvested_on=date(2026, 6, 20))
    weighed = _harvest(session, farm, "80")
    session.commit()
    login(client, "kuaiji")
    html = client.get(f"/trace/labels?lot={boxes.id}&lot={weighed.id}").get_data(as_text=True)
    assert _labels(html) == [boxes.lot_number] * 4 + [weighed.lot_number]

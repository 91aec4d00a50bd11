"""An invoice as a PDF: the invoice page's content on paper (a receipt once it is paid).

Drawn with fpdf2 in DejaVu Sans (shipped in ``slotwise/fonts``: the PDF core fonts cover Latin-1
only, and a company or an address may be written in any script). Pure: the invoice, the organization
and its billing details in, bytes out; no clock (the document's date is the invoice's).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import FontFace

from slotwise.models import Invoice, Organization
from slotwise.money import format_amount
from slotwise.services.billing_details import BillingDetails

FONTS = Path(__file__).resolve().parent.parent / "fonts"
FONT = "DejaVu"
STATUS_TITLES = {"paid": "Receipt", "open": "Invoice", "void": "Invoice (void)"}
HEADINGS = FontFace(emphasis="BOLD", fill_color=(238, 241, 245))
NOTE = ("Pro-ration is days left over days in the billing period; each line is rounded once, half up.")


def long_date(value: datetime) -> str:
    return f"{value:%b} {value.day}, {value.year}"


def document_title(invoice: Invoice) -> str:
    return f"{STATUS_TITLES.get(invoice.status, 'Invoice')} #{invoice.number}"


def invoice_filename(invoice: Invoice) -> str:
    kind = "receipt" if invoice.status == "paid" else "invoice"
    return f"slotwise-{kind}-{invoice.number}.pdf"


def download_headers(invoice: Invoice) -> dict[str, str]:
    """How the PDF is answered: as a download with its own name, never cached."""
    return {"Content-Disposition": f'attachment; filename="{invoice_filename(invoice)}"', "Cache-Control": "no-store"}


def _status_line(invoice: Invoice) -> str:
    total = format_amount(invoice.total, invoice.currency)
    if invoice.status == "paid":
        paid = f" on {long_date(invoice.paid_at)}" if invoice.paid_at else ""
        return f"Paid{paid}: {total}"
    if invoice.status == "void":
        return "Void: nothing is owed on this invoice."
    return f"Amount due: {total}"


def render_invoice_pdf(invoice: Invoice, org: Organization, details: BillingDetails) -> bytes:
    """The PDF of ``invoice``: organization and billing details, number, dates, every line with its
    exact pro-ration factor, the total (the sum of the lines, as stored) and the status."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(invoice.created_at)
    pdf.set_title(document_title(invoice))
    pdf.set_author("slotwise")
    pdf.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    width = pdf.epw

    pdf.set_font(FONT, "B", 11)
    pdf.cell(width, 6, "slotwise", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "B", 20)
    pdf.cell(width, 12, document_title(invoice), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 11)
    pdf.cell(width, 7, _status_line(invoice), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    top, half = pdf.get_y(), width / 2
    _block(pdf, "Billed to", [org.name, details.company, *details.address_lines, details.email or ""], half)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + half, top)
    facts = [f"Invoice number: {invoice.number}", f"Issued: {long_date(invoice.created_at)}"]
    if invoice.paid_at is not None:
        facts.append(f"Paid: {long_date(invoice.paid_at)}")
    facts.append(f"Billing period: {long_date(invoice.period_start)} – {long_date(invoice.period_end)}")
    _block(pdf, "Details", facts, half, x=pdf.l_margin + half)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)

    pdf.set_font(FONT, "", 9.5)
    money = [Align.L, Align.R, Align.R, Align.R, Align.R]
    with pdf.table(col_widths=(46, 8, 16, 14, 16), text_align=money, line_height=6,
                   headings_style=HEADINGS, first_row_as_headings=True) as table:
        table.row(["Description", "Qty", "Unit price", "Pro-ration", "Amount"])
        for line in invoice.lines:
            table.row([line.description, str(line.quantity), format_amount(line.unit_price, invoice.currency),
                       f"{line.days_left}/{line.days_in_period}", format_amount(line.amount, invoice.currency)])
    pdf.ln(2)
    pdf.set_font(FONT, "B", 12)
    pdf.cell(width, 8, f"Total: {format_amount(invoice.total, invoice.currency)}", align=Align.R,
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 8.5)
    pdf.multi_cell(width, 5, f"Amounts in {invoice.currency.upper()}. {NOTE}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _block(pdf: FPDF, heading: str, lines: list[str], width: float, *, x: float | None = None) -> None:
    """A heading and its lines (the empty ones left out), each wrapped within ``width``."""
    left = pdf.l_margin if x is None else x
    pdf.set_x(left)
    pdf.set_font(FONT, "B", 9)
    pdf.cell(width, 5, heading.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10.5)
    for text in (line for line in lines if line):
        pdf.set_x(left)
        pdf.multi_cell(width - 4, 5.5, text, new_x=XPos.LEFT, new_y=YPos.NEXT)

"""Student-chosen text (a folder's name) made safe for the class files: a CSV cell and a Markdown table cell.

A student names the folder; the instructor opens grades.csv in a spreadsheet and reads summary.md.
A cell that starts with ``=`` ``+`` ``-`` ``@`` (or a tab or carriage return) would run as a
formula (CSV injection): it gets a leading ``'``, which spreadsheets show as text. In Markdown a
``|`` would end the cell and a line break the row: ``|`` is escaped, line breaks become spaces.
"""
from __future__ import annotations

import re

FORMULA_FIRST = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_FIRST) else text


def md_cell(text: str) -> str:
    """``text`` on one line of a Markdown table cell (or heading): no ``|`` that ends it, no line break."""
    one_line = re.sub(r"[\r\n\x0b\x0c\x85\u2028\u2029]+", " ", str(text))
    return one_line.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")

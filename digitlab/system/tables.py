"""Text tables for the console: columns padded to their widest cell, numbers right-aligned; and Markdown."""

from __future__ import annotations


def looks_numeric(text: str) -> bool:
    """A cell that reads as a number ('0.9912', '0.99 ± 0.01', '-' for none), to be right-aligned."""
    try:
        float(text.split(" ± ")[0].replace(",", ""))
        return True
    except ValueError:
        return text == "-"


def format_table(headers: list[str], cells: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; numeric columns right-aligned."""
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(looks_numeric(row[i]) for row in cells) for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in cells])


def format_markdown(headers: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines)

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
    if not headers:
        return "\n" * len(cells)
    return format_columns(headers, [[row[i] for row in cells] for i in range(len(headers))])


def format_columns(headers: list[str], columns: list[list[str]]) -> str:
    """format_table of the cells given column by column (each column's cells top to bottom), padded a column at
    a time: a listing of thousands of rows is formatted in one pass over each column."""
    padded = []
    for header, column in zip(headers, columns):
        width = max(len(header), max(map(len, column), default=0))
        pad = str.rjust if column and all(map(looks_numeric, column)) else str.ljust
        padded.append([pad(header, width)] + [pad(cell, width) for cell in column])
    return "\n".join(["  ".join(line).rstrip() for line in zip(*padded)])


def format_markdown(headers: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines)

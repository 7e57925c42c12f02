"""Every table ssp prints or writes: Markdown tables (stage reports, results.md, the demo) and plain aligned
console tables (the data commands). Standard library only, so any module may use it."""

from __future__ import annotations


def markdown_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table as lines, one per header, separator and row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def aligned_table(header: list[str], rows: list[list]) -> str:
    """A plain aligned table: the first column left-aligned, the others right-aligned."""
    cells = [header] + [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [
            value.rjust(width) for value, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)

"""Tables for the terminal, readable at any width, 80 columns included.

Every table the CLI prints goes through :func:`render`. A table is drawn whole when its labels,
numbers and headers fit the width on one line each; otherwise it turns vertical: one block per
row, the row's label (the first column) on a line of its own, then a ``column  value`` line per
other column. Nothing is ever cut short with '…'. Only prose columns (``text``) may wrap.

rich is imported inside the function so that ``gumbench --help`` stays fast.
"""

from __future__ import annotations

from typing import Sequence


def render(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], *, text: Sequence[str] = (),
           width: int | None = None) -> str:
    """The table as plain text, at ``width`` columns (default: $COLUMNS, else the terminal's, else 80)."""
    import io

    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    console = Console(file=io.StringIO(), width=width)
    rows = [[str(cell) for cell in row] for row in rows]
    table = Table()
    for i, name in enumerate(columns):
        if name in text:
            table.add_column(Text(name), overflow="fold")
        else:  # never wrapped; min_width makes the measure below count its widest cell
            widest = max(Text(cell).cell_len for cell in (name, *(row[i] for row in rows)))
            table.add_column(Text(name), justify="left" if i == 0 else "right", no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*map(Text, row))
    # the narrowest the table can be, measured as if the console were unlimited (console.measure clamps to its width)
    if console.measure(table, options=console.options.update_width(1 << 16)).minimum > console.width:
        blocks = []
        for row in rows:
            fields = Table.grid(padding=(0, 2))
            fields.add_column(no_wrap=True)
            fields.add_column(overflow="fold")
            for name, cell in zip(columns[1:], row[1:]):
                fields.add_row(Text(name), Text(cell))
            blocks += [Text(""), Text(row[0], overflow="fold"), Padding(fields, (0, 0, 0, 2))]
        table = Group(*blocks)
    console.print(Text(title), table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().rstrip().splitlines())

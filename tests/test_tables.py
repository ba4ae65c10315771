"""gumbench.tables.render: the table whole when it fits the width, else one block per row; never a cell cut
short with '…'; only prose columns wrap; no line wider than the width, none with trailing spaces."""

import pytest

from gumbench.tables import render

COLUMNS = ["estimator", "samples", "mean"]
ROWS = [["st-gumbel", 10_000, 0.25], ["reinforce[baseline=loo]", 20, -3.5]]
# the whole table: each column as wide as its widest cell (23, 7, 4 characters), one space of padding on either
# side of every cell and 4 rules: 23 + 7 + 4 + 3 * 2 + 4 = 44 characters
WHOLE = 44


def lines(text):
    return text.split("\n")


def test_a_table_that_fits_is_drawn_whole_first_column_left_numbers_right():
    out = render("Gradient statistics", COLUMNS, ROWS, width=WHOLE)
    first, *table = lines(out)
    assert first == "Gradient statistics"
    assert len(table) == 6 and {len(line) for line in table} == {WHOLE}  # top rule, header, rule, 2 rows, bottom rule
    assert table[1] == "┃ estimator               ┃ samples ┃ mean ┃"
    assert table[3] == "│ st-gumbel               │   10000 │ 0.25 │"
    assert table[4] == "│ reinforce[baseline=loo] │      20 │ -3.5 │"


def test_one_column_narrower_turns_it_vertical_one_block_per_row():
    out = render("Gradient statistics", COLUMNS, ROWS, width=WHOLE - 1)
    assert out == "\n".join([
        "Gradient statistics",
        "",
        "st-gumbel",
        "  samples  10000",
        "  mean     0.25",
        "",
        "reinforce[baseline=loo]",
        "  samples  20",
        "  mean     -3.5",
    ])


@pytest.mark.parametrize("width", [12, 20, 30, 43, 44, 60, 120])
def test_nothing_is_cut_short_and_no_line_is_wider_than_the_width(width):
    out = render("T", COLUMNS, ROWS, width=width)
    assert "…" not in out
    assert all(len(line) <= width and line == line.rstrip() for line in lines(out))
    flat = "".join(out.split())  # below a value's width, labels and values fold onto the next lines
    for row in ROWS:
        assert all(str(cell) in flat for cell in row)


def test_a_label_wider_than_the_width_folds_without_losing_characters():
    label = "residual-vq[quantizer=fsq,stages=4]"  # 35 characters
    out = render("T", ["estimator", "loss"], [[label, 1]], width=16)
    first, blank, *block = lines(out)
    assert (first, blank) == ("T", "")
    assert block[:3] == [label[:16], label[16:32], label[32:]] and block[3] == "  loss  1"


def test_only_prose_columns_wrap_and_their_words_stay_whole():
    note = " ".join(f"word{i}" for i in range(30))
    out = render("T", ["estimator", "note"], [["gst", note]], text=["note"], width=40)
    table = lines(out)[1:]
    assert {len(line) for line in table} == {40}, "drawn whole: the prose column wraps to fit"
    cells = [line.split("│")[2].strip() for line in table if line.startswith("│")]
    assert len(cells) > 3 and " ".join(cells) == note  # wrapped between words, in order, nothing lost


def test_cells_are_shown_as_str_and_an_empty_table_keeps_its_header():
    out = render("T", ["a", "b"], [[None, 1.0], [True, "x"]], width=80)
    assert "│ None │ 1.0 │" in out and "│ True │   x │" in out
    empty = lines(render("Nothing yet", ["estimator", "mean"], [], width=80))
    assert empty[0] == "Nothing yet" and empty[2] == "┃ estimator ┃ mean ┃" and len(empty) == 5


def test_default_width_is_the_columns_variable(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WHOLE - 1))
    assert lines(render("T", COLUMNS, ROWS))[2] == "st-gumbel"  # vertical
    monkeypatch.setenv("COLUMNS", str(WHOLE))
    assert lines(render("T", COLUMNS, ROWS))[2].startswith("┃ estimator")  # whole


def test_wide_characters_count_by_their_cells_on_screen():
    # each CJK character takes two cells: the label is 8 cells wide, the table 8 + 1 + 2 * 2 + 3 = 16
    rows = [["日本語版", 1]]
    assert lines(render("T", ["名前", "n"], rows, width=16))[2] == "┃ 名前     ┃ n ┃"
    assert lines(render("T", ["名前", "n"], rows, width=15))[2] == "日本語版"

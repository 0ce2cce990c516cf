"""How a recipe part's rows file holds its rows: by column, each value a column shares by
every row written once.

A recipe part has no tar: its rows file *is* the part (the build writes it, the table is
assembled from it, readers take a recipe's fields from it). Written row by row it repeated
every field name and every value the rows share (the shard, the split, ``flac_offset`` -1)
and cost about 700 bytes per mix, 14 times the table's row. By column, with the shared
values once, it is about a third of that, and still JSON a person can read:

    {"fields": ["corpus", "key", ...], "constant": {"corpus": "msp", ...},
     "columns": {"key": ["...", ...], "stoi": [0.61, ...], ...}}

Decoding gives back the very rows that were encoded (same values, same types, same field
order), so the digest of a part's rows and everything built from them are unchanged.
Rows files written row by row (``{"rows": [...]}``, stores built before) still read.
"""
from __future__ import annotations

ROWS_BY_COLUMN = ("fields", "constant", "columns")
#: Present where the rows differ in their fields (see encode_rows).
ROW_SHAPES = ("shapes", "shape")


def _shared(values: list):
    """(True, value) when every value is the same value of the same type; NaN never is."""
    first = values[0]
    kind = type(first)
    if all(type(v) is kind and v == first for v in values):
        return True, first
    return False, None


def encode_rows(rows: list[dict]) -> dict:
    """The ``fields``/``constant``/``columns`` of ``rows``. Rows with other fields than the
    first (a reverb row's RIR fields beside a noise row's) add ``shapes`` (each distinct field
    list) and ``shape`` (each row's index in it); a field a row lacks is null in its column."""
    index_of: dict[tuple[str, ...], int] = {}  # field list -> its index in shapes
    shape = [index_of.setdefault(tuple(row), len(index_of)) for row in rows]
    shapes = [list(names) for names in index_of]
    fields = list(dict.fromkeys(name for names in shapes for name in names))
    constant, columns = {}, {}
    for name in fields:
        values = [row.get(name) for row in rows]
        shared, value = _shared(values) if len(shapes) <= 1 else (False, None)
        if shared:
            constant[name] = value
        else:
            columns[name] = values
    document = {"fields": fields, "constant": constant, "columns": columns}
    if len(shapes) > 1:
        document.update(shapes=shapes, shape=shape)
    return document


def decode_rows(document: dict) -> list[dict] | None:
    """The rows a part's document holds, by column or (older files) by row; None if neither."""
    if isinstance(document.get("rows"), list):
        return document["rows"]
    if not all(isinstance(document.get(k), (list, dict)) for k in ROWS_BY_COLUMN):
        return None
    fields, constant, columns = (document[k] for k in ROWS_BY_COLUMN)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1 or set(fields) != set(constant) | set(columns):
        return None
    count = lengths.pop() if lengths else int(document.get("samples", 0))
    shapes, shape = document.get("shapes", [fields]), document.get("shape", [0] * count)
    return [{name: constant[name] if name in constant else columns[name][i] for name in shapes[shape[i]]}
            for i in range(count)]

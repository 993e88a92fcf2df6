"""Presenting released results: tables, tidy CSV, Excel workbooks and charts.

Works only on the released JSON (figures already disclosure-controlled), so it can run
in the API, the command line or a partner's notebook alike.
"""

from service.results.charts import ChartError, available_charts, chart, plot_results, render
from service.results.export import csv_text, xlsx_bytes
from service.results.tables import (
    footnotes,
    natural_key,
    overlap_rows,
    policy_in_words,
    result_tables,
    show,
    status_of,
    tidy_rows,
)

__all__ = [
    "ChartError",
    "available_charts",
    "chart",
    "csv_text",
    "footnotes",
    "natural_key",
    "overlap_rows",
    "plot_results",
    "policy_in_words",
    "render",
    "result_tables",
    "show",
    "status_of",
    "tidy_rows",
    "xlsx_bytes",
]

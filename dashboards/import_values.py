"""What the dashboards take from the warehouse at import time: the reporting currency and branch colours.

Why at import time: the committed YAML is the same for every institution,
but amounts must show *its* currency and a branch must keep *its* colour on
every dashboard. Superset formats a metric's amounts with the ISO 4217 code
of the metric's `currency`; the committed datasets name the placeholder
`${REPORTING_CURRENCY}` there and `bundle` fills it in. Superset colours a
series by its label; the same `label_colors` map on every dashboard keeps
"Gulu" one colour everywhere (otherwise each dashboard assigns colours in the
order it meets the labels).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

from spm_warehouse import settings

CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
TARGETS_SEED = settings.PROJECT_ROOT / "dbt_project" / "seeds" / "kpi_targets.csv"
# Superset's default categorical scheme ("supersetColors"), in its order.
PALETTE = ("#1FA8C9", "#454E7C", "#5AC189", "#FF7F44", "#666666", "#E04355", "#FCC700", "#A868B7", "#3CCCCB",
           "#A38F79", "#8FD3E4", "#A1A6BD", "#ACE1C4", "#FEC0A1", "#B2B2B2", "#EFA1AA", "#FDE380", "#D3B3DA",
           "#9EE5E5", "#D1C6BC")


class ImportValuesError(ValueError):
    """A setting the import needs is wrong; the message names it."""


@dataclass
class ImportValues:
    """Currency code (None: amounts stay without one), label -> colour, settings and targets, and notes."""

    currency: str | None = None
    label_colors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings_values: dict[str, str] = field(default_factory=lambda: settings_values())
    targets: dict[str, str] = field(default_factory=lambda: institution_targets())

    def bundle_kwargs(self) -> dict:
        return {"currency": self.currency, "label_colors": self.label_colors,
                "settings_values": self.settings_values, "targets": self.targets}


def settings_values() -> dict[str, str]:
    """Settings the dataset metrics use: the minimum number of clients behind an outcome mean."""
    return {"MIN_CELL_N": str(settings.get_int("SPM_MIN_CELL_N"))}


def institution_targets(path=TARGETS_SEED) -> dict[str, str]:
    """indicator -> the institution-wide branch target of seeds/kpi_targets.csv (the threshold lines)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["indicator"]: str(float(row["threshold"])) for row in csv.DictReader(f)
                if row.get("scope") == "branch" and not (row.get("branch_id") or "").strip() and row.get("threshold")}


def currency_from_setting() -> str | None:
    value = (settings.get("SPM_REPORTING_CURRENCY") or "").strip().upper()
    if not value:
        return None
    if not CURRENCY_CODE.match(value):
        raise ImportValuesError(f"SPM_REPORTING_CURRENCY={value!r} is not an ISO 4217 code such as UGX or KES")
    return value


def currency_from_products(codes: list[str]) -> tuple[str | None, str]:
    """The one currency of the loan products, else None and why."""
    found = sorted({c.strip().upper() for c in codes if c and c.strip()})
    if len(found) == 1 and CURRENCY_CODE.match(found[0]):
        return found[0], f"reporting currency {found[0]} (the loan products' currency)"
    if not found:
        return None, "no loan product names a currency: amounts are shown without one (set SPM_REPORTING_CURRENCY)"
    return None, (f"loan products use several currencies ({', '.join(found)}): set SPM_REPORTING_CURRENCY; "
                  "amounts are shown without one")


def label_colors(branches: list[str], products: list[str]) -> dict[str, str]:
    """Branch (and region) names, then product names, each in the order given, onto the palette."""
    colours: dict[str, str] = {}
    for names in (branches, products):
        for i, name in enumerate(n for n in names if n):
            colours.setdefault(name, PALETTE[i % len(PALETTE)])
    return colours


def read_import_values(conn) -> ImportValues:
    """Currency and colours from the published `analytics` (conn: psycopg, the owner connection)."""
    schema = settings.analytics_schema()
    out = ImportValues(currency=currency_from_setting())
    if out.currency:
        out.notes.append(f"reporting currency {out.currency} (SPM_REPORTING_CURRENCY)")
    has = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = %s "
        "AND (table_name, column_name) IN (('dim_product', 'currency_code'), ('dim_branch', 'branch_name'), "
        "('dim_product', 'product_name'))", (schema,))}
    if out.currency is None:
        if "dim_product" in has:
            codes = [r[0] for r in conn.execute(
                f'SELECT DISTINCT currency_code FROM "{schema}".dim_product WHERE currency_code IS NOT NULL')]
            out.currency, note = currency_from_products(codes)
        else:
            note = f"{schema}.dim_product has no currency_code yet: amounts are shown without a currency"
        out.notes.append(note)
    # branches with clients (leaf offices) take the first, strongest colours; Unknown comes last
    branches = [r[0] for r in conn.execute(
        f'SELECT branch_name FROM "{schema}".dim_branch ORDER BY branch_id < 0, is_leaf IS NOT TRUE, branch_id')
    ] if "dim_branch" in has else []
    products = [r[0] for r in conn.execute(
        f'SELECT product_name FROM "{schema}".dim_product ORDER BY product_id')] if "dim_product" in has else []
    out.label_colors = label_colors(branches, products)
    return out


def import_values() -> ImportValues:
    """Read them with the warehouse owner connection; an unreachable warehouse gives the setting only."""
    try:
        import psycopg  # optional here: the dashboards package also runs where psycopg is absent
    except ImportError:
        return ImportValues(currency=currency_from_setting(), notes=["psycopg missing: currency from the setting only"])
    try:
        with psycopg.connect(settings.connection("warehouse").libpq_url(), connect_timeout=10) as conn:
            return read_import_values(conn)
    except psycopg.Error as exc:
        return ImportValues(currency=currency_from_setting(),
                            notes=[f"warehouse not readable ({str(exc).splitlines()[0]}): currency from the setting "
                                   "only, default colours"])

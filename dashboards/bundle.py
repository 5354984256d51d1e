"""Build the import bundle (a ZIP in Superset's export layout) from the assets folder.

Why at import time: the committed YAML must never carry a password or a
machine's host name. `assets/databases/*.yaml` hold `${NAME}` placeholders
that are filled here from the project settings (see
config.warehouse_placeholders). Two values come from the warehouse itself
(dashboards.import_values): a dataset metric whose `currency` symbol is
`${REPORTING_CURRENCY}` gets the reporting currency (or no currency when none
is known), and every dashboard gets the same `label_colors` (branch and
product colours). Every other file is copied unchanged.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import yaml

from dashboards import import_values
from dashboards.config import ASSETS_DIR

BUNDLE_ROOT = "spm_dashboards"
ASSET_FOLDERS = ("databases", "datasets", "charts", "dashboards")
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")
CURRENCY_PLACEHOLDER = "${REPORTING_CURRENCY}"
# filled from the settings and seeds at import (import_values): ${MIN_CELL_N} in dataset metrics, ${TARGET_<INDICATOR>}
# as the value of a chart's threshold line (a FORMULA annotation layer; the line is dropped when there is no target)
TARGET_PLACEHOLDER = re.compile(r"^\$\{TARGET_([A-Z0-9_]+)\}$")


class BundleError(ValueError):
    """The assets folder is incomplete or a placeholder has no value."""


def asset_files(assets_dir: Path = ASSETS_DIR) -> list[Path]:
    """metadata.yaml and every YAML file of the four asset folders, sorted."""
    metadata = assets_dir / "metadata.yaml"
    if not metadata.is_file():
        raise BundleError(f"{metadata} is missing")
    files = [metadata]
    for folder in ASSET_FOLDERS:
        found = sorted((assets_dir / folder).rglob("*.yaml"))
        if not found:
            raise BundleError(f"{assets_dir / folder} holds no YAML file")
        files.extend(found)
    return files


def fill_placeholders(text: str, values: dict[str, str], where: str) -> str:
    """Replace every ${NAME}; a placeholder without a value is an error, never left in."""
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise BundleError(f"{where}: no value for placeholder(s) {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def fill_dataset(text: str, currency: str | None, settings_values: dict[str, str], where: str) -> str:
    """Metrics marked with the currency placeholder get `currency` (None: no currency); ${MIN_CELL_N} and the
    like in metric expressions get their setting; any other placeholder is an error."""
    data = yaml.safe_load(text)
    for metric in data.get("metrics") or []:
        cur = metric.get("currency")
        if isinstance(cur, dict) and cur.get("symbol") == CURRENCY_PLACEHOLDER:
            metric["currency"] = {"symbol": currency, "symbolPosition": cur.get("symbolPosition") or "prefix"} \
                if currency else None
        metric["expression"] = fill_placeholders(metric["expression"], settings_values, where)
    out = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if PLACEHOLDER.search(out):
        raise BundleError(f"{where}: a placeholder outside a metric's currency or expression")
    return out


def fill_chart(text: str, targets: dict[str, str], where: str) -> str:
    """Threshold lines get the target of their indicator; without one the line is left out."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise BundleError(f"{where}: placeholders are only allowed in databases/, dataset metrics and chart "
                          "threshold lines")
    layers = []
    for layer in data["params"].get("annotation_layers") or []:
        match = TARGET_PLACEHOLDER.match(str(layer.get("value")))
        if match:
            if match.group(1).lower() not in targets:
                continue
            layer = {**layer, "value": targets[match.group(1).lower()]}
        layers.append(layer)
    data["params"]["annotation_layers"] = layers
    out = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if PLACEHOLDER.search(out):
        raise BundleError(f"{where}: placeholders are only allowed in databases/, dataset metrics and chart "
                          "threshold lines (${TARGET_<INDICATOR>} as a line's value)")
    return out


def fill_label_colors(text: str, colours: dict[str, str]) -> str:
    """The same label -> colour map on every dashboard (labels the YAML names itself win)."""
    data = yaml.safe_load(text)
    meta = data.setdefault("metadata", {})
    meta["label_colors"] = {**colours, **(meta.get("label_colors") or {})}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def bundle_contents(values: dict[str, str], assets_dir: Path = ASSETS_DIR, *, currency: str | None = None,
                    label_colors: dict[str, str] | None = None, settings_values: dict[str, str] | None = None,
                    targets: dict[str, str] | None = None) -> dict[str, str]:
    """Path inside the bundle -> file text, placeholders filled.

    `${NAME}` placeholders are allowed in databases/ (connection), in
    datasets/ (a metric's currency, `settings_values` in metric expressions)
    and in charts/ (`${TARGET_<INDICATOR>}` threshold lines from `targets`):
    a `${` anywhere else is a mistake that would reach Superset verbatim.
    """
    if settings_values is None:
        settings_values = import_values.settings_values()
    if targets is None:
        targets = import_values.institution_targets()
    contents: dict[str, str] = {}
    for path in asset_files(assets_dir):
        rel = path.relative_to(assets_dir).as_posix()
        text = path.read_text(encoding="utf-8")
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BundleError(f"{rel} is not valid YAML: {exc}") from None
        if rel.startswith("databases/"):
            text = fill_placeholders(text, values, rel)
        elif rel.startswith("datasets/") and PLACEHOLDER.search(text):
            text = fill_dataset(text, currency, settings_values, rel)
        elif rel.startswith("charts/") and PLACEHOLDER.search(text):
            text = fill_chart(text, targets, rel)
        elif PLACEHOLDER.search(text):
            raise BundleError(f"{rel}: placeholders are only allowed in databases/, dataset metrics and chart "
                              "threshold lines")
        if rel.startswith("dashboards/") and label_colors:
            text = fill_label_colors(text, label_colors)
        contents[rel] = text
    return contents


def asset_uuids(assets_dir: Path = ASSETS_DIR) -> dict[str, list[str]]:
    """uuids of the dashboards, charts and datasets the folder defines (what an import creates)."""
    found: dict[str, list[str]] = {}
    for folder in ("dashboards", "charts", "datasets"):
        found[folder] = sorted(
            str(yaml.safe_load(p.read_text(encoding="utf-8"))["uuid"]) for p in (assets_dir / folder).rglob("*.yaml")
        )
    return found


def write_bundle(out: Path, values: dict[str, str], assets_dir: Path = ASSETS_DIR, *, currency: str | None = None,
                 label_colors: dict[str, str] | None = None, settings_values: dict[str, str] | None = None,
                 targets: dict[str, str] | None = None) -> Path:
    """Write the ZIP (mode 0600: it holds the warehouse password) and return its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        contents = bundle_contents(values, assets_dir, currency=currency, label_colors=label_colors,
                                   settings_values=settings_values, targets=targets)
        for rel, text in contents.items():
            zf.writestr(f"{BUNDLE_ROOT}/{rel}", text)
    tmp.chmod(0o600)
    tmp.replace(out)
    return out

"""Headless Chromium walk through the Superset dashboards, as a user would see them.

Run with Superset's interpreter (selenium is pinned in its lock), never
imported by pytest: `tests/dashboards_e2e.py` starts it with a JSON request
on stdin and reads one `SPM_BROWSER {json}` line back.

Request: {"base_url", "screenshots_dir", "timeout_s",
          "sessions": [{"label", "username", "password", "dashboards": [slug, ...],
                        "filter_checks": [{"dashboard", "filter", "value"}]}]}
Answer:  {"sessions": {label: {"login_ok", "landing_url", "login_message",
           "dashboards": {slug: {"title", "charts": [{"name", "viz", "state", "error", "text"}],
                                 "http_errors": [{"url", "status"}], "filters": [name, ...], "screenshot"}},
           "filter_checks": [{"dashboard", "filter", "value", "options", "charts": [...], "screenshot"}]}}}

A filter check opens the dashboard, picks `value` in the native filter named
`filter` (as a user would: open the select, type, click the option, Apply)
and reports the charts again; with `value` null it only lists the options
the filter offers (the dropdown shows at most a few, enough for branches).

A chart's state is "ok" (rendered, no error element), "error" (Superset shows
an error in it) or "timeout" (still loading when the time ran out).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1200",
]

# One snapshot of every chart of the page: name, viz type, loading?, error text, visible text.
CHART_STATES_JS = """
return Array.from(document.querySelectorAll('[data-test="chart-grid-component"]')).map(el => {
  const err = el.querySelector('[data-test*="error"], [role="alert"], .ant-alert-error, .alert-danger');
  const loading = el.querySelector('[data-test="loading-indicator"]');
  const body = el.querySelector('[data-test="slice-container"]');
  return {
    name: el.getAttribute('data-test-chart-name'),
    viz: el.getAttribute('data-test-viz-type'),
    loading: !!loading,
    error: err ? (err.innerText || err.getAttribute('aria-label') || 'error element').slice(0, 500) : null,
    rendered: !!body && body.getBoundingClientRect().height > 0,
    text: body ? body.innerText.slice(0, 4000) : '',
  };
});
"""

FILTER_NAMES_JS = """
return Array.from(document.querySelectorAll('[data-test="filter-control-name"]')).map(e => e.innerText.trim());
"""


def new_driver() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def fill_form(driver: webdriver.Chrome, values: dict[str, str], timeout: float) -> None:
    """Type each value into the input of that id, until every input holds exactly its text.

    Why: the login page is a React app. Keys sent while it is still mounting
    can be lost or land in an input that React then replaces (also one typed
    earlier); checking every value means a failed login is never a typing
    accident of the test.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            for element_id, text in values.items():
                field = WebDriverWait(driver, max(deadline - time.monotonic(), 1.0)).until(
                    ec.element_to_be_clickable((By.ID, element_id)))
                if field.get_attribute("value") != text:
                    field.send_keys(Keys.CONTROL, "a")
                    field.send_keys(Keys.DELETE)
                    field.send_keys(text)
            if all(driver.find_element(By.ID, i).get_attribute("value") == t for i, t in values.items()):
                return
        except WebDriverException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not fill {sorted(values)} of the login form")
        time.sleep(0.5)


def log_in(driver: webdriver.Chrome, base_url: str, username: str, password: str, timeout: float) -> tuple[str, str]:
    """Fill and submit the real login form; return the URL landed on and, on failure, the page's message."""
    driver.get(base_url + "/login/")
    fill_form(driver, {"username": username, "password": password}, timeout)
    WebDriverWait(driver, timeout).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-test="login-button"]'))).click()
    try:  # a failed login stays on /login/ and shows a message: give it a bounded time
        WebDriverWait(driver, min(timeout, 30)).until(lambda d: "/login" not in d.current_url)
    except WebDriverException:
        pass
    landing = driver.current_url
    message = ""
    if "/login" in landing:
        try:
            message = driver.find_element(By.TAG_NAME, "body").text[:500]
        except WebDriverException:
            message = "(page text not readable)"
    return landing, message


def http_errors(driver: webdriver.Chrome, base_url: str) -> list[dict]:
    """Responses >= 400 from our server since the last call (Chrome performance log)."""
    errors = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.responseReceived":
            continue
        response = message["params"]["response"]
        if response["url"].startswith(base_url) and response["status"] >= 400:
            errors.append({"url": response["url"][len(base_url):][:300], "status": response["status"]})
    return errors


def fit_window_to_page(driver: webdriver.Chrome) -> None:
    """Make the window as tall as the page, so every chart renders and the screenshot holds all."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(1600, min(max(int(height) + 100, 1200), 6000))


def open_dashboard(driver: webdriver.Chrome, base_url: str, slug: str, shot: Path, timeout: float) -> dict:
    http_errors(driver, base_url)  # drop what earlier pages logged
    driver.get(f"{base_url}/superset/dashboard/{slug}/")
    deadline = time.monotonic() + timeout
    WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, '[data-test="chart-grid-component"]')))
    fit_window_to_page(driver)  # charts outside the viewport are not rendered (virtualization)
    states = wait_for_charts(driver, max(deadline - time.monotonic(), 1.0))
    fit_window_to_page(driver)
    time.sleep(1.0)
    states = driver.execute_script(CHART_STATES_JS) or states
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shot))
    driver.set_window_size(1600, 1200)
    charts = chart_results(states)
    header = driver.find_elements(By.CSS_SELECTOR, '[data-test="dashboard-header-container"] [data-test="editable-title"]')
    return {
        "title": header[0].text if header else driver.title,
        "charts": charts,
        "http_errors": http_errors(driver, base_url),
        "filters": driver.execute_script(FILTER_NAMES_JS) or [],
        "screenshot": str(shot),
    }


def wait_for_charts(driver: webdriver.Chrome, timeout: float) -> list[dict]:
    """Poll until every chart shows data or an error, stable for 2 s; return the last snapshot."""
    deadline = time.monotonic() + timeout
    states: list[dict] = []
    settled_since = None
    while time.monotonic() < deadline:
        states = driver.execute_script(CHART_STATES_JS) or []
        settled = states and all(s["error"] or (s["rendered"] and not s["loading"]) for s in states)
        if settled:
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= 2.0:  # charts re-render once after filters load
                break
        else:
            settled_since = None
        time.sleep(0.5)
    return states


def chart_results(states: list[dict]) -> list[dict]:
    charts = []
    for s in states:
        state = "error" if s["error"] else ("ok" if s["rendered"] and not s["loading"] else "timeout")
        charts.append({"name": s["name"], "viz": s["viz"], "state": state, "error": s["error"], "text": s["text"]})
    return charts


FILTER_SELECT_JS = """
const name = arguments[0];
const label = Array.from(document.querySelectorAll('[data-test="filter-control-name"]'))
  .find(e => e.innerText.trim() === name);
if (!label) return null;
let box = label;
while (box && !box.querySelector('.ant-select-selector')) box = box.parentElement;
return box ? box.querySelector('.ant-select-selector') : null;
"""


OPEN_OPTIONS = ".ant-select-dropdown:not(.ant-select-dropdown-hidden) .ant-select-item-option"


def click_option(driver: webdriver.Chrome, value: str, timeout: float) -> None:
    """Click the dropdown option showing `value`, once it can take a click.

    The dropdown fades in and re-renders while the search narrows it, so an
    option found a moment ago may be stale or not yet interactable (CI saw
    "element not interactable"). Look it up again and retry until it takes
    the click or the time runs out.
    """
    attempts = 0

    def clicked(d: webdriver.Chrome) -> bool:
        nonlocal attempts
        for option in d.find_elements(By.CSS_SELECTOR, OPEN_OPTIONS):
            try:
                if (option.get_attribute("textContent") or "").strip() != value or not option.is_displayed():
                    continue
                attempts += 1
                if attempts <= 12:
                    option.click()
                else:  # after 3 s of refusals, send the click event the option listens to
                    d.execute_script("arguments[0].click();", option)
                return True
            except WebDriverException:  # stale or still animating: look again
                return False
        return False

    WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        clicked, message=f"dropdown option {value!r} never became clickable")


def apply_select_filter(driver: webdriver.Chrome, base_url: str, check: dict, shot: Path, timeout: float) -> dict:
    driver.get(f"{base_url}/superset/dashboard/{check['dashboard']}/")
    WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, '[data-test="chart-grid-component"]')))
    fit_window_to_page(driver)
    wait_for_charts(driver, timeout)
    select = driver.execute_script(FILTER_SELECT_JS, check["filter"])
    if select is None:
        return {**check, "options": None, "charts": [], "error": f"no native filter named {check['filter']!r}"}
    select.click()
    search = select.find_element(By.CSS_SELECTOR, "input")
    if check["value"]:
        search.send_keys(check["value"])
    options = WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, OPEN_OPTIONS))
    texts = [(o.get_attribute("textContent") or "").strip() for o in options]  # .text is "" while fading in
    if check["value"] is None:  # only list what the filter offers
        search.send_keys(Keys.ESCAPE)
        return {**check, "options": texts, "charts": [], "error": None}
    if check["value"] not in texts:
        return {**check, "options": texts, "charts": [], "error": f"value {check['value']!r} not offered"}
    click_option(driver, check["value"], timeout)
    search.send_keys(Keys.ESCAPE)
    WebDriverWait(driver, timeout).until(  # enabled only once the pick registered
        ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-test="filter-bar__apply-button"]'))).click()
    try:  # the charts reload: wait for that to start, then for every chart to settle
        WebDriverWait(driver, 5).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-test="loading-indicator"]'))
    except WebDriverException:
        pass
    charts = chart_results(wait_for_charts(driver, timeout))
    driver.save_screenshot(str(shot))
    return {**check, "options": texts, "charts": charts, "screenshot": str(shot), "error": None}


def run(request: dict) -> dict:
    base_url = request["base_url"].rstrip("/")
    shots = Path(request["screenshots_dir"])
    timeout = float(request.get("timeout_s", 120))
    result: dict = {"sessions": {}}
    for session in request["sessions"]:
        label = session["label"]
        driver = new_driver()
        try:
            landing, message = log_in(driver, base_url, session["username"], session["password"], timeout)
            out = {"login_ok": "/login" not in landing, "landing_url": landing, "login_message": message,
                   "dashboards": {}}
            if out["login_ok"]:
                for slug in session["dashboards"]:
                    out["dashboards"][slug] = open_dashboard(driver, base_url, slug, shots / f"{label}-{slug}.png", timeout)
                out["filter_checks"] = [
                    apply_select_filter(driver, base_url, check,
                                        shots / f"{label}-{check['dashboard']}-filter-{i}.png", timeout)
                    for i, check in enumerate(session.get("filter_checks") or [], start=1)
                ]
            else:
                driver.save_screenshot(str(shots / f"{label}-login-failed.png"))
        finally:
            driver.quit()
        result["sessions"][label] = out
    return result


def main() -> int:
    request = json.loads(sys.stdin.read())
    print("SPM_BROWSER " + json.dumps(run(request)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

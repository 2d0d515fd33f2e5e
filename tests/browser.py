"""Drive Snakemake's HTML report in headless Chromium (Debian's chromium + chromium-driver).

Snakemake 9's ``--report report.html`` writes one self-contained page: a React app whose results
are embedded as ``data:`` URIs (global ``results``, filed under ``categories``). The helpers here
click through it as a reader would: menu -> category -> subcategory -> a result's view button,
then wait for the image (or the HTML iframe) the app shows in its content pane.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Flags Chromium needs on a closed network (it hangs on its background connections otherwise).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1100",
)
# Each wait reloads a report of every figure inlined; with three other jobs on the 2 CPUs one
# took over 30 s to show a table (the same test alone passed twice in a row).
TIMEOUT_S = 90


def chromium_binaries() -> tuple[str, str] | None:
    """Paths of Debian's chromium and chromedriver, or None where either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium() -> Iterator[object]:
    """A selenium Chrome driver on Debian's Chromium, with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binaries = chromium_binaries()
    if binaries is None:
        raise RuntimeError("chromium and chromedriver are not installed")
    browser, driver_path = binaries
    with tempfile.TemporaryDirectory(prefix="mf-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        driver.set_page_load_timeout(TIMEOUT_S)
        try:
            yield driver
        finally:
            driver.quit()


def _wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT_S).until(condition, message)


def open_report(driver, path: Path) -> dict:
    """Load the report and wait until the app has rendered its menu; return its categories."""
    from selenium.webdriver.common.by import By

    driver.get(path.resolve().as_uri())
    _wait(driver, lambda d: d.find_elements(By.XPATH, "//nav//span[text()='Workflow']"),
          "the report's menu never rendered")  # fmt: skip
    return driver.execute_script("return categories;")


def _click_menu_entry(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    xpath = f"//nav//a[.//span[normalize-space()={_xpath_literal(text)}]]"
    link = _wait(driver, lambda d: d.find_elements(By.XPATH, xpath), f"no menu entry {text!r}")
    link[0].click()


def _xpath_literal(text: str) -> str:
    return f"'{text}'" if "'" not in text else f'"{text}"'


def show_results(driver, path: Path, category: str, subcategory: str, expected: int = 1) -> list:
    """Navigate from a fresh page to one subcategory's result table; return its rows once it
    shows at least ``expected`` of them (the table fills in row by row)."""
    from selenium.webdriver.common.by import By

    open_report(driver, path)
    _click_menu_entry(driver, category)
    if len(driver.execute_script("return Object.keys(categories[arguments[0]]);", category)) > 1:
        _click_menu_entry(driver, subcategory)
    return _wait(driver, lambda d: rows if len(rows := d.find_elements(
                     By.XPATH, "//nav//table/tbody/tr")) >= expected else [],
                 f"no result table of {expected} rows for {category}/{subcategory}")  # fmt: skip


def view_row(driver, row) -> dict:
    """Click a result row's view button; return what the content pane shows.

    ``{"kind": "img", "natural_width": ..., "natural_height": ..., "src_prefix": ...}`` once the
    image has decoded, or ``{"kind": "html", "text": ...}`` with the iframe's rendered text.
    """
    from selenium.webdriver.common.by import By

    row.find_element(By.XPATH, "./td[last()]//a[1]").click()

    def shown(d):
        images = d.find_elements(By.XPATH, "//div[contains(@class, 'p-3')]/img")
        for image in images:
            state = d.execute_script(
                "const i = arguments[0]; return [i.complete, i.naturalWidth, i.naturalHeight,"
                " i.getAttribute('src').slice(0, 30)];",
                image,
            )
            if state[0] and state[1] > 0:
                return {"kind": "img", "natural_width": state[1], "natural_height": state[2],
                        "src_prefix": state[3]}  # fmt: skip
        frames = d.find_elements(By.TAG_NAME, "iframe")
        if frames:
            d.switch_to.frame(frames[0])
            try:
                text = d.find_element(By.TAG_NAME, "body").text
            finally:
                d.switch_to.default_content()
            if text.strip():
                return {"kind": "html", "text": text}
        return False

    return _wait(driver, shown, "the result never showed in the content pane")

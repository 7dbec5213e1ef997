"""The console in a real browser (Debian's Chromium, headless, driven by its chromedriver):
a month as the people do it. The maker logs in and drafts; their own approval is refused with
the reason; the checker logs in and approves; a person's amounts are explained on a page; the
keyboard reaches every control; the pages switch language. Screenshots of the main pages are
written under tests/screenshots/ (ignored by git)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from ledger.application import Ledger
from tests import roles as test_roles
from tests.conftest import Files, enrolment, new_store, query_store, settlement
from tests.console_server import console, postgres_store_with_people

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).resolve().parent.parent / "screenshots"
PEOPLE = [f"00100000000{i}" for i in range(4)]


def chromium() -> tuple[str, str]:
    """Debian's browser and its driver; missing, the test fails saying how to install them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("no chromium or chromedriver: `apt-get install chromium chromium-driver`")
    return browser, driver


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[WebDriver]:
    binary, driver = chromium()
    options = Options()
    options.binary_location = binary
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    with webdriver.Chrome(service=Service(executable_path=driver), options=options) as chrome:
        chrome.implicitly_wait(5)
        yield chrome


def log_in(chrome: WebDriver, base: str, user: str, password: str = "") -> None:
    chrome.get(f"{base}/login")
    chrome.find_element(By.ID, "user").send_keys(user)
    if password:
        chrome.find_element(By.ID, "password").send_keys(password)
    chrome.find_element(By.ID, "login").click()
    arrived(chrome, "/payroll")
    assert chrome.find_element(By.ID, "user").text == user


def arrived(chrome: WebDriver, part: str) -> None:
    """Wait until the page the browser went to is the one whose address holds `part` (a
    click sends the form; the new page comes after)."""
    WebDriverWait(chrome, 30).until(expected_conditions.url_contains(part))


def log_out(chrome: WebDriver) -> None:
    chrome.find_element(By.CSS_SELECTOR, "form.who button").click()
    arrived(chrome, "/login")


def explained(chrome: WebDriver, base: str, personal_id: str) -> str:
    """The person page's text for a personal id typed into its search."""
    chrome.get(f"{base}/person")
    chrome.find_element(By.ID, "id").send_keys(personal_id)
    chrome.find_element(By.ID, "find").click()
    arrived(chrome, f"id={personal_id}")
    return str(chrome.find_element(By.TAG_NAME, "main").text)


def shot(chrome: WebDriver, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    chrome.save_screenshot(str(SHOTS / f"{name}.png"))


def test_a_month_in_the_console(
    browser: WebDriver, tmp_path: Path, files: Files, downloads: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}"
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    exports = tmp_path / "exports"
    with console(store, exports) as base:
        log_in(browser, base, "maker")
        browser.get(f"{base}/payroll?period=2025-07")
        browser.find_element(By.ID, "draft").click()
        arrived(browser, "done=drafted")
        assert "DRAFT" in browser.find_element(By.ID, "lists").text
        shot(browser, "payroll-drafted")
        browser.find_element(By.ID, "approve").click()  # the maker's own: refused, with why
        arrived(browser, "/payroll/approve")
        refusal = browser.find_element(By.ID, "problems").text
        assert "maker drafted the list 2025-07 01 and cannot approve it" in refusal
        log_out(browser)

        log_in(browser, base, "checker")
        browser.get(f"{base}/payroll?period=2025-07")
        browser.find_element(By.ID, "approve").click()
        arrived(browser, "done=approved")
        lists = browser.find_element(By.ID, "lists").text
        assert "APPROVED" in lists and "checker" in lists
        shot(browser, "payroll-approved")

        browser.find_element(By.ID, "export").click()
        arrived(browser, "done=exported")
        names = browser.find_element(By.ID, "files").text.split()
        assert names == ["2025-07_01_POST.csv", "2025-07_01_POST.manifest.json"]
        assert "APPROVED · đã xuất tệp" in browser.find_element(By.ID, "lists").text
        browser.find_element(By.LINK_TEXT, "2025-07_01_POST.csv").click()
        got = downloads / "2025-07_01_POST.csv"
        WebDriverWait(browser, 30).until(lambda _: got.exists() and got.stat().st_size > 0)
        assert got.read_bytes() == (exports / "2025-07" / "2025-07_01_POST.csv").read_bytes()
        shot(browser, "payroll-exported")

        # a results file with a bad row: every problem shown, nothing applied
        paid = [settlement(f"2025-07-01-{p}") for p in PEOPLE]
        bad = files.settlements([*paid[:3], settlement(f"2025-07-01-{PEOPLE[3]}", "LOST")])
        browser.get(f"{base}/settlement")
        browser.find_element(By.ID, "file").send_keys(str(bad))
        browser.find_element(By.ID, "check").click()
        arrived(browser, "/settlement/check")
        problems = browser.find_element(By.ID, "problems").text
        assert "row 5" in problems and "status" in problems, problems
        shot(browser, "settlement-refused")
        # the good one: checked first (what would be applied), then applied
        good = files.settlements(paid)
        browser.get(f"{base}/settlement")
        browser.find_element(By.ID, "file").send_keys(str(good))
        browser.find_element(By.ID, "check").click()
        arrived(browser, "/settlement/check")
        assert "4 " in browser.find_element(By.ID, "checked").text
        browser.find_element(By.ID, "apply").click()
        arrived(browser, "/settlement/apply")
        assert browser.find_element(By.ID, "applied").text.startswith(f"{good.name}: 4 ")

        assert f"{PEOPLE[2]} Người {PEOPLE[2][-4:]}" in explained(browser, base, PEOPLE[2])
        shot(browser, "person")
        # found by the beginning of the name, then explained from the list of those found
        browser.get(f"{base}/person")
        browser.find_element(By.ID, "id").send_keys(f"Người {PEOPLE[3][-4:]}")
        browser.find_element(By.ID, "find").click()
        arrived(browser, "id=Ng")
        browser.find_element(By.LINK_TEXT, PEOPLE[3]).click()
        arrived(browser, f"id={PEOPLE[3]}")
        assert (
            f"{PEOPLE[3]} Người {PEOPLE[3][-4:]}" in browser.find_element(By.TAG_NAME, "main").text
        )

        # the list's own page and the totals' charts
        browser.get(f"{base}/payroll?period=2025-07")
        browser.find_element(By.LINK_TEXT, "01").click()
        arrived(browser, "/payroll/list")
        assert browser.find_element(By.ID, "no-previous").text  # July is the first month
        shot(browser, "payroll-list")
        browser.find_element(By.LINK_TEXT, "Tổng hợp").click()
        arrived(browser, "/totals")
        chart = browser.find_element(By.ID, "months-chart")
        assert chart.size["width"] > 100 and "2025-07" in chart.text
        shot(browser, "totals")

        statuses = query_store(store, "SELECT DISTINCT status FROM payment_lines")
        assert statuses == [("PAID",)]  # the good file applied whole, the bad one not at all

        # the language switch, back to the same page
        browser.get(f"{base}/person")
        browser.find_element(By.LINK_TEXT, "English").click()
        WebDriverWait(browser, 30).until(
            lambda b: b.find_element(By.TAG_NAME, "h1").text == "Person"
        )
        assert browser.find_element(By.TAG_NAME, "h1").text == "Person"
        assert browser.current_url.startswith(f"{base}/person")


def test_every_control_is_labelled_and_reached_by_the_keyboard(
    browser: WebDriver, tmp_path: Path, files: Files
) -> None:
    store = f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}"
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    with console(store) as base:
        log_in(browser, base, "maker")
        for path in ("/payroll?period=2025-07", "/person", "/totals"):
            browser.get(base + path)
            inputs = browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden])")
            for field in inputs:  # each named by a <label for=…>
                named = f"label[for='{field.get_attribute('id')}']"
                label = browser.find_elements(By.CSS_SELECTOR, named)
                assert label and label[0].text.strip(), path
            controls = inputs + browser.find_elements(By.CSS_SELECTOR, "button, a[href]")
            reached = set()
            body = browser.find_element(By.TAG_NAME, "body")
            body.click()
            for _ in range(len(controls) + 2):
                browser.switch_to.active_element.send_keys("\t")
                reached.add(browser.switch_to.active_element.id)
            assert {c.id for c in controls} <= reached, path


def test_on_postgresql_each_role_sees_its_own_pages(
    browser: WebDriver, tmp_path: Path, files: Files, request: pytest.FixtureRequest
) -> None:
    """Logged in with their database roles: the operator is not offered, and cannot open, the
    auditor's pages; the auditor finds a person's explanation and the events behind it."""
    store = postgres_store_with_people(
        new_store("postgresql", tmp_path, request),
        files.enrolments([enrolment(p) for p in PEOPLE]),
        {"op_browser": ("operator",), "aud_browser": ("auditor",)},
    )
    with console(store) as base:
        log_in(browser, base, "op_browser", test_roles.PASSWORD)
        assert browser.find_elements(By.LINK_TEXT, "Khoản phải thu hồi") == []  # not offered
        for page in ("/receivables", "/audit"):
            browser.get(base + page)
            refused = browser.find_element(By.ID, "refused").text
            assert "needs the role auditor" in refused and "op_browser" in refused
        log_out(browser)

        log_in(browser, base, "aud_browser", test_roles.PASSWORD)
        assert browser.find_elements(By.ID, "draft") == []  # an auditor drafts nothing
        assert f"{PEOPLE[1]} Người {PEOPLE[1][-4:]}" in explained(browser, base, PEOPLE[1])
        browser.get(f"{base}/audit?person={PEOPLE[1]}")
        assert "Beneficiary.Enrolled" in browser.find_element(By.ID, "trail").text
        shot(browser, "audit-trail")
        # the auditor runs verify; the audit page says when, who, and that it held
        env = {**os.environ, "LEDGER_STORE": store}
        env.pop("LEDGER_KAFKA", None)
        done = subprocess.run(
            [sys.executable, "-m", "tests.ledger_as_role", "verify", "--by", "aud_browser"],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        browser.get(f"{base}/audit")
        result = browser.find_element(By.ID, "verify-result").text
        assert "aud_browser" in result and "nguyên vẹn" in result
        browser.get(f"{base}/receivables?period=2025-07")  # nothing approved: none owed
        assert browser.find_element(By.ID, "none-approved").text
        shot(browser, "receivables")

"""The runs pages as a person sees them: headless Chromium (Debian's) on the real app, in-process host, real runs.

Playwright drives the system Chromium (`CHROMIUM`, else `chromium` on PATH); without one the tests fail under
REQUIRE_SERVICES=1, as for any missing service. Screenshots at phone and desktop widths go to .local/screenshots/
for the docs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from local_runner.host.clock import ManualClock
from local_runner.host.host import LocalHost
from orchestrations.contracts import RunStatus
from tests.conftest import PROJECT_ROOT, missing_service
from tests.flow.conftest import FlowEnv, wait_for, wait_for_end
from tests.flow.given import ended_run, rejected_run

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

SCREENSHOTS = PROJECT_ROOT / ".local" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SLEEPS = json.dumps(["python", "-c", "import time; time.sleep(600)"])
KEY = "a-function-key"
# axe-core's rules for WCAG 2.1 A and AA (labels, names, contrast, landmarks, ...).
AXE_WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
               "resultTypes": ["violations"]}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the system (Playwright's own browser download is not used). Module-scoped:
    Playwright's sync API runs an event loop in the main thread until it stops, and `asyncio.run` in later
    tests refuses to start while one runs."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        missing_service("no Chromium found: install Debian's `chromium` (apt-get install chromium) or set CHROMIUM")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable)
        except Exception as exc:  # Playwright reports a browser it cannot start with its own error types
            missing_service(f"Chromium at {executable} did not start under Playwright: {exc}")
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    yield context.new_page()
    context.close()


def open_page(page: Page, host: LocalHost, route: str, *, axe: bool = True) -> None:
    answer = page.goto(f"{host.base_url}/api/{route}")
    assert answer is not None and answer.status == 200, answer and answer.text()
    assert_accessible_basics(page, axe=axe)


def assert_accessible_basics(page: Page, *, axe: bool = True) -> None:
    """axe-core finds no WCAG 2.1 AA violation (contrast included); and, said plainly, the page says its language,
    labels every control, names every button, has no image without text, and does not scroll sideways at the
    width it is shown (a table scrolls inside its own region). axe itself is a script: `axe=False` where the
    page runs none."""
    if axe:
        results = Axe().run(page, options=AXE_WCAG_AA)
        assert results.violations_count == 0, results.generate_report()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.title()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
                 .filter(control => control.labels.length === 0 && !control.getAttribute("aria-label"))
                 .map(control => control.outerHTML)"""
    )
    assert unlabelled == []
    nameless = page.evaluate("""() => [...document.querySelectorAll("button")]
                                 .filter(button => !button.textContent.trim()).map(button => button.outerHTML)""")
    assert nameless == []
    assert page.locator("img:not([alt])").count() == 0
    too_wide = page.evaluate(
        """() => [...document.querySelectorAll("body *")]
                 .filter(element => element.getBoundingClientRect().right > window.innerWidth
                                    && !element.closest(".scroll, pre"))
                 .map(element => element.outerHTML.slice(0, 120))"""
    )
    assert too_wide == [], "these stick out of the page"
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "it scrolls sideways"


def screenshots(page: Page, name: str) -> None:
    """The page at phone and desktop widths, whole, under .local/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        assert_accessible_basics(page)
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def phase(page: Page, name: str) -> str:
    return page.locator("ol.timeline li").filter(has_text=f"{name}:").inner_text()


def test_the_list_shows_each_runs_status_and_task_type_and_the_filter_narrows_it(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, page: Page,
) -> None:
    host = start_host()
    succeeded, rejected = ended_run(flow_env, fixtures_dir), rejected_run(flow_env)

    open_page(page, host, "ui/runs")

    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text=succeeded.run_id)).to_contain_text("succeeded")
    expect(rows.filter(has_text=succeeded.run_id)).to_contain_text("parse_portfolio")
    expect(rows.filter(has_text=rejected.run_id)).to_contain_text("rejected")
    screenshots(page, "runs-list")

    page.get_by_label("Status", exact=True).select_option("rejected")
    page.get_by_role("button", name="Show runs").click()

    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text(rejected.run_id)
    assert "status=rejected" in page.url
    expect(page.get_by_label("Status", exact=True)).to_have_value("rejected")


def test_a_bad_filter_is_explained_on_the_page(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], page: Page,
) -> None:
    host = start_host()

    answer = page.goto(f"{host.base_url}/api/ui/runs?limit=0")

    assert answer is not None and answer.status == 400
    expect(page.get_by_role("alert")).to_contain_text("whole number from 1 to 500")


def test_a_succeeded_runs_page_shows_its_phases_outputs_result_and_a_log_link_that_works(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, page: Page,
) -> None:
    host = start_host()
    run = ended_run(flow_env, fixtures_dir)
    assert run.status is RunStatus.SUCCEEDED and run.outputs

    open_page(page, host, f"ui/runs/{run.run_id}")

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Run {run.run_id}")
    expect(page.locator("p", has_text="Status:")).to_contain_text("succeeded")
    for name in ("uploaded", "queued", "starting", "running", "recording"):
        assert f"{name}: done" in phase(page, name)
    assert "ended: done" in phase(page, "ended") and "(succeeded)" in phase(page, "ended")
    expect(page.locator("ol.timeline li[aria-current=step]")).to_contain_text("ended")
    for uri in run.outputs:
        expect(page.get_by_role("list").filter(has_text=uri)).to_be_visible()
    assert json.loads(page.locator("pre[aria-labelledby=result]").inner_text())  # the document, whole
    expect(page.get_by_role("button", name="Rerun: a new run of the same upload")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel this run")).to_have_count(0)
    assert "az://" not in page.locator("a").evaluate_all("links => links.map(link => link.href).join(' ')")
    screenshots(page, "run-succeeded")

    with page.expect_response(lambda response: response.url.endswith(f"/runs/{run.run_id}/log")) as log:
        page.get_by_role("link", name="The whole log").click()

    assert log.value.status == 200
    assert log.value.headers["x-content-type-options"] == "nosniff"  # never sniffed into a page
    assert page.locator("body").inner_text().strip()


def test_a_runs_page_shows_everything_without_javascript(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, browser: Browser,
) -> None:
    host = start_host()
    run = ended_run(flow_env, fixtures_dir)
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()

    open_page(page, host, f"ui/runs/{run.run_id}?code={KEY}", axe=False)

    expect(page.locator("p", has_text="Status:")).to_contain_text("succeeded")
    assert "ended: done" in phase(page, "ended")
    expect(page.get_by_role("link", name="The whole log")).to_have_attribute(
        "href", f"/api/runs/{run.run_id}/log?code={KEY}")
    expect(page.get_by_role("link", name="All runs")).to_have_attribute("href", f"/api/ui/runs?code={KEY}")
    context.close()


def test_a_rejected_runs_page_shows_its_error_and_offers_no_action(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], page: Page,
) -> None:
    host = start_host()
    run = rejected_run(flow_env)
    assert run.error is not None

    open_page(page, host, f"ui/runs/{run.run_id}")

    expect(page.locator("p", has_text="Status:")).to_contain_text("rejected")
    expect(page.locator(".error")).to_contain_text(run.error.code)
    expect(page.locator(".error")).to_contain_text(run.error.message)
    for name in ("queued", "starting", "running", "recording"):
        assert f"{name}: skipped" in phase(page, name)
    expect(page.get_by_role("button")).to_have_count(0)
    expect(page.get_by_text("No outputs.")).to_be_visible()
    screenshots(page, "run-rejected")


def test_markup_in_an_uploads_name_or_the_pages_key_is_shown_as_text_and_never_runs(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], page: Page,
) -> None:
    # Whoever may write to the uploads container names the blob, and the error quotes that name; the key comes
    # from the page's own address, which a link can forge. A script of theirs would read the operator's key.
    host = start_host()
    markup = '<img src=x onerror="window.injected=1">'
    run = wait_for_end(flow_env, flow_env.upload(f"parse_portfolio/{markup}.txt", b"isin,market_value,currency\n"))
    assert run.error is not None and markup in run.error.message
    forged_key = quote(f'"><script>window.injected=2</script>{markup}')

    for route in (f"ui/runs/{run.run_id}?code={forged_key}", f"ui/runs?code={forged_key}"):
        open_page(page, host, route)

        assert page.evaluate("() => window.injected") is None
        assert page.locator("script:not([src]), img").count() == 0
    open_page(page, host, f"ui/runs/{run.run_id}")
    expect(page.locator(".error")).to_contain_text(f"{markup}.txt")
    # And were the escaping ever lost, the page's policy runs no script nor style but its own.
    with contextlib.suppress(PlaywrightError):  # Playwright reports the refused script as an error, or not
        page.add_script_tag(content="window.injected = 3")
    assert page.evaluate("() => window.injected") is None
    assert page.evaluate("() => getComputedStyle(document.body).maxWidth") == "1024px"  # base.html's own style


def test_an_unknown_run_has_a_not_found_page(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], page: Page,
) -> None:
    host = start_host()

    answer = page.goto(f"{host.base_url}/api/ui/runs/run-0123456789abcdef")

    assert answer is not None and answer.status == 404
    expect(page.get_by_role("alert")).to_contain_text("run-0123456789abcdef")


def test_the_cancel_button_of_a_running_run_cancels_it_with_the_pages_key(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], page: Page,
) -> None:
    host = start_host(clock=ManualClock(), RUNNER_COMMAND=SLEEPS)
    run_id = flow_env.upload("parse_portfolio/cancel-me.csv", b"isin,market_value,currency\nGB0007980591,10000,USD\n")
    wait_for(lambda: (record := flow_env.record(run_id)) is not None and record.status is RunStatus.RUNNING,
             step=host.poll_triggers_once, what=f"run {run_id} to be running")
    open_page(page, host, f"ui/runs/{run_id}?code={KEY}")
    expect(page.locator("p", has_text="Status:")).to_contain_text("running")
    assert "running: now" in phase(page, "running")
    expect(page.get_by_role("button", name="Rerun: a new run of the same upload")).to_have_count(0)
    posted: list[Request] = []
    page.on("request", lambda request: posted.append(request) if request.method == "POST" else None)

    page.get_by_label("Reason for cancelling (optional)").fill("wrong portfolio")
    with page.expect_navigation():  # the page reloads once the API took the cancel
        page.get_by_role("button", name="Cancel this run").click()

    [cancel] = posted
    assert cancel.url.startswith(f"{host.base_url}/api/runs/{run_id}/cancel")
    assert cancel.headers["x-functions-key"] == KEY
    assert cancel.post_data_json == {"reason": "wrong portfolio", "by": "runs page"}
    expect(page.locator("dd", has_text="wrong portfolio")).to_contain_text("runs page")
    wait_for_end(flow_env, run_id, step=host.poll_triggers_once)
    page.reload()
    expect(page.locator("p", has_text="Status:")).to_contain_text("cancelled")
    expect(page.locator(".error")).to_contain_text("wrong portfolio")
    expect(page.get_by_role("button", name="Cancel this run")).to_have_count(0)
    screenshots(page, "run-cancelled")

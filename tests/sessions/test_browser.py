"""The dashboard in a real headless Chromium: start a session on seeded data, watch it reach 100 %, get the report."""
import os
from contextlib import ExitStack
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from openpyxl import load_workbook

from carriers.simulator.testing import running_simulator
from devices.demo import demo_seed
from devices.models import DevicePin
from sessions.models import OptimizationSession
from tests.factories import UserFactory
from tests.qcluster import qcluster
from tests.report_storage import use_report_folder

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "correct horse battery staple"

pytestmark = [
    pytest.mark.postgres,  # the qcluster subprocess needs a database it can share with the live server
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium; .ci/run installs it)"),
]


@pytest.fixture
def stack():
    with ExitStack() as s:
        yield s


@pytest.fixture
def browser_page(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # in between are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


def test_whole_flow_start_watch_inspect_apply(browser_page, stack, live_server, settings, tmp_path):
    """Start a session, watch it reach 100 %, open it and its report, filter its SIMs to the changes, look at
    usage against allowances, apply the changes with a confirmation and watch the push reach the (simulated)
    carrier and be verified, then see the account's history; a screenshot of each page in var/screenshots."""
    page = browser_page
    use_report_folder(settings, tmp_path / "reports")  # the web side serves what the worker wrote there
    # The Go/No-Go's first estimate before any push has measured this account: the simulator answers
    # at loopback speed, not at a real carrier's default.
    settings.PUSH_DEFAULT_RATE_PER_MINUTE = 60_000
    carrier = stack.enter_context(running_simulator(sims=3000, seed=11))  # the same fleet as the demo seed
    demo = demo_seed(devices=3000, seed=11)
    demo.provider.api_base_url = carrier.url
    demo.provider.save(update_fields=["api_base_url"])
    operator = UserFactory(username="operator", password=PASSWORD)
    demo.tenant.users.add(operator)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    env = {"MEDIA_ROOT": str(tmp_path), "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
           "PUSH_VERIFY_DELAY_SECONDS": "1"}
    with qcluster(workers=2, env=env, log_path=tmp_path / "cluster.log"):
        page.goto(f"{live_server.url}/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#providers")

        row = page.locator(f'#providers tr[data-provider="{demo.provider.pk}"]')
        row.locator("input[name=sync_devices]").uncheck()  # no carrier to call here: optimize the seeded SIMs
        row.locator("button[name=start]").click()
        page.wait_for_selector(".alert.success")
        session = OptimizationSession.objects.get(provider=demo.provider)
        # The bar moves only through the page's polling of the REST API: no reload.
        page.locator(f'#sessions tr[data-guid="{session.guid}"] .bar[aria-valuenow="100"]').wait_for(timeout=120_000)
        page.locator(f'#sessions tr[data-guid="{session.guid}"] .status.succeeded').wait_for()
        running = page.locator(f'#providers tr[data-provider="{demo.provider.pk}"] [data-field=running]')
        assert running.inner_text() == "none", "the account shows no running session once it ended"
        page.screenshot(path=str(SCREENSHOTS / "sessions.png"), full_page=True)

        session.refresh_from_db()
        assert session.status == "succeeded", session.error
        page.click(f'#sessions tr[data-guid="{session.guid}"] a')
        page.wait_for_selector("#plan-chart")
        optimized = page.locator('[data-field="optimized_cost"]').inner_text()
        # Money is shown to the cent, half up (Django's floatformat), as the carrier's invoice rounds.
        assert optimized == f"{session.optimized_cost.quantize(Decimal('0.01'), ROUND_HALF_UP):,} {demo.provider.currency}"
        assert page.locator("#plan-chart g.bars").count() >= 2
        assert page.locator("#groups tbody tr").count() == session.run.comm_groups.count()

        with page.expect_download() as download_info:
            page.click("#report-link")
        download = download_info.value
        assert download.suggested_filename == f"device_assignments_{session.guid}.xlsx"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        page.screenshot(path=str(SCREENSHOTS / "session.png"), full_page=True)

        # The SIMs of the session: filter to the changes through the form, then look at one move.
        page.click("#sims-link")
        page.wait_for_selector("#sim-filters")
        page.check("#sim-filters input[name=changed]")
        page.select_option("#sim-filters select[name=sort]", "-saving")
        page.click("#sim-filters button[type=submit]")
        page.wait_for_url("**changed=true**")
        changed = session.run.assignments.filter(changed=True).count()
        assert changed > 0
        assert page.locator("#sim-count").inner_text().startswith(f"{changed} SIM")
        assert page.locator("#sims tbody tr:not(.changed)").count() == 0, "only changed SIMs are listed"
        page.screenshot(path=str(SCREENSHOTS / "sims.png"), full_page=True)

        # One SIM: open it from its row, then pin it there (the operator is given the pin permissions).
        operator.user_permissions.add(*Permission.objects.filter(codename__in=["add_devicepin", "delete_devicepin"]))
        first = page.locator("#sims tbody tr").first
        iccid = first.get_attribute("data-iccid")
        first.locator("td a").first.click()
        page.wait_for_selector("#sim-cards")
        page.fill("#sim-pin input[name=reason]", "Browser test: the contract fixes this plan")
        page.click("#sim-pin button[type=submit]")
        page.wait_for_selector(".alert.success")
        assert "pinned" in page.locator("#sim-pin").inner_text()
        assert DevicePin.objects.filter(device__provider=demo.provider, device__iccid=iccid).exists()
        page.screenshot(path=str(SCREENSHOTS / "sim.png"), full_page=True)

        page.goto(f"{live_server.url}/sessions/{session.guid}/usage/")
        page.wait_for_selector("section.group")
        assert page.locator("section.group").count() >= 1
        page.screenshot(path=str(SCREENSHOTS / "usage.png"), full_page=True)

        # Apply from the browser: preview, confirm, watch the push reach the simulated carrier and finish.
        page.goto(f"{live_server.url}/sessions/{session.guid}/")
        page.click("#apply-link")
        page.wait_for_selector("#go-no-go.success")
        # The SIM pinned above keeps its plan: it is not pushed.
        to_push = changed - 1
        assert page.locator('#preview [data-field="changes"]').inner_text() == f"{to_push:,}"
        # Without pushes.apply_recommendations the operator sees the preview and cannot apply.
        assert page.locator("#read-only").is_visible() and page.locator("#apply-form").count() == 0
        page.screenshot(path=str(SCREENSHOTS / "apply-read-only.png"), full_page=True)
        operator.user_permissions.add(Permission.objects.get(codename="apply_recommendations"))
        page.reload()
        page.screenshot(path=str(SCREENSHOTS / "apply.png"), full_page=True)
        page.check("#apply-form input[name=confirm]")
        page.click("#apply-form button[name=apply]")
        page.wait_for_selector("#push-counts")
        page.locator("#push-status.succeeded").wait_for(timeout=120_000)
        assert page.locator('#push-counts [data-field="applied"]').inner_text() == f"{to_push}"
        assert page.locator('#push-counts [data-field="verified"]').inner_text() == f"{to_push}"
        page.screenshot(path=str(SCREENSHOTS / "push.png"), full_page=True)

        # The account's history: this cycle's savings and the session.
        page.goto(f"{live_server.url}/providers/{demo.provider.pk}/")
        page.wait_for_selector("#cycle-chart")
        assert page.locator(f'#account-sessions tr[data-guid="{session.guid}"]').count() == 1
        page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)

        # On a phone the session page is one column: nothing but the tables' own scroll is wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{live_server.url}/sessions/{session.guid}/")
        page.wait_for_selector("#totals")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(SCREENSHOTS / "session-phone.png"), full_page=True)

    # What the carrier holds now is what the session recommended, for every SIM it changed but the one pinned
    # above, which kept its plan.
    on_carrier = carrier.carrier.snapshot()
    moved = dict(session.run.assignments.filter(changed=True).exclude(iccid=iccid)
                 .values_list("iccid", "recommended_plan__code"))
    assert len(moved) == to_push and {i: on_carrier[i][1] for i in moved} == moved
    assert on_carrier[iccid][1] == session.run.assignments.get(iccid=iccid).current_plan.code
    workbook = load_workbook(saved, read_only=True)
    rows = list(workbook["Assignments"].iter_rows(min_row=2, values_only=True))
    assert len(rows) == session.device_count
    # Each cell holds a stored 4-place value; the rows are rounded so that they add up to the session's
    # stored total exactly (carrieropt.money.money_shares).
    rows_total = sum(Decimal(str(r[6])) for r in rows)
    assert rows_total == session.optimized_cost, (rows_total, session.optimized_cost)
    assert os.path.getsize(SCREENSHOTS / "session.png") > 10_000
    # Connections opened by ORM calls made while Playwright's loop ran were still open when the
    # test database was dropped ("being accessed by other users"); close them here.
    connections.close_all()

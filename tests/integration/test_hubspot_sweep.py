"""HubSpot as a ``CrmSweep`` against its fake over HTTP: the portal id, the search's pages,
its 10,000-result cap (a small cap on the fake) and its own rate limit."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from adapters.hubspot import HubSpotCrm
from adapters.pacing import Pacer
from fakes.hubspot import FakeHubSpot
from handlers.crm_rules import DEFAULT_FIELDS
from tests.integration.harness import fast_retrying

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEARCH = r"/crm/v3/objects/deals/search"


@pytest.fixture
def fake():
    with FakeHubSpot("pat-na1-sweep", rate_limit=(1000, 10.0), search_rate=None) as fake:
        yield fake


def reader(fake: FakeHubSpot, **options) -> HubSpotCrm:
    return HubSpotCrm(
        fake.token,
        base_url=fake.origin,
        fields=DEFAULT_FIELDS["hubspot"],
        retrying=fast_retrying(),
        **options,
    )


def deals_at(fake: FakeHubSpot, minutes: list[float], stage: str = "closedwon") -> list[str]:
    """One deal modified at each ``BASE + minutes``."""
    made = []
    for m in minutes:
        deal = fake.add_deal(f"Deal {m}", stage)
        fake.touch(deal, BASE + timedelta(minutes=m))
        made.append(deal)
    return made


def test_the_account_id_is_the_portal_id_read_once(fake):
    crm = reader(fake)

    assert crm.account_id() == str(fake.portal_id)
    assert crm.account_id() == str(fake.portal_id)
    assert fake.requests_to("GET", r"/account-info/v3/details") == 1


def test_every_deal_changed_in_the_window_comes_once_oldest_first_across_pages(fake):
    inside = deals_at(fake, [float(m) for m in range(450)])
    deals_at(fake, [-1.0, 450.0, 451.0])  # before and after the window
    fake.set_stage(inside[0], "qualifiedtobuy")  # moved out of the window: modified now
    fake.touch(inside[0], BASE + timedelta(minutes=5))  # and back in

    changes = list(reader(fake).changed_deals(BASE, BASE + timedelta(minutes=450)))

    assert sorted(c.deal_id for c in changes) == sorted(inside)
    assert [c.modified_at for c in changes] == sorted(c.modified_at for c in changes)
    assert fake.requests_to("POST", SEARCH) == 3  # 200 + 200 + 50
    moved = next(c for c in changes if c.deal_id == inside[0])
    assert (moved.stage.stage, moved.stage.won) == ("qualifiedtobuy", False)
    assert all(c.stage.won for c in changes if c.deal_id != inside[0])


def test_a_deal_modified_while_the_sweep_runs_makes_no_other_deal_drop_out(fake):
    made = deals_at(fake, [float(m) for m in range(450)])
    listing = reader(fake).changed_deals(BASE, BASE + timedelta(minutes=450))
    seen = [next(listing).deal_id for _ in range(200)]  # the first page

    fake.set_stage(made[0], "qualifiedtobuy")  # modified now: it leaves the window
    seen += [c.deal_id for c in listing]

    assert sorted(seen) == sorted(made)  # with offset pages, deal 200 would never come


def test_a_window_past_the_search_cap_is_sliced_and_every_deal_comes_exactly_once(fake):
    fake.search_cap = 30
    # Ties at one millisecond straddle the cap: the restart from it must not repeat them.
    minutes = [float(m // 4) for m in range(100)]
    made = deals_at(fake, minutes)

    changes = list(reader(fake, search_cap=30).changed_deals(BASE, BASE + timedelta(hours=1)))

    assert sorted(c.deal_id for c in changes) == sorted(made)
    assert len(changes) == len(made)
    statuses = [status for method, path, status in fake.log if path == SEARCH]
    assert statuses and set(statuses) == {200}  # never asked past the cap
    assert len(statuses) >= 4


def test_more_deals_at_one_millisecond_than_the_cap_is_an_error_not_a_loop(fake):
    from schemas.errors import VendorRejected

    fake.search_cap = 10
    deals_at(fake, [1.0] * 11)

    with pytest.raises(VendorRejected, match="over 10 deals modified at one millisecond"):
        list(reader(fake, search_cap=10).changed_deals(BASE, BASE + timedelta(hours=1)))


def test_the_fake_refuses_a_page_past_the_cap_as_hubspot_does(fake):
    import requests

    fake.search_cap = 10
    deals_at(fake, [float(m) for m in range(20)])
    body = {"limit": 5, "after": "10", "filterGroups": [], "sorts": []}

    answer = requests.post(
        f"{fake.origin}{SEARCH}",
        json=body,
        headers={"Authorization": f"Bearer {fake.token}"},
        timeout=5,
    )

    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"


def test_small_pages_over_the_search_limit_wait_instead_of_earning_a_429(fake, monkeypatch):
    monkeypatch.setattr("adapters.hubspot.SEARCH_PAGE", 5)
    fake.search_rate = (3, 1.0)
    deals_at(fake, [float(m) for m in range(40)])
    crm = reader(fake, search_pacer=Pacer(3, 1.0))
    started = time.monotonic()

    changes = list(crm.changed_deals(BASE, BASE + timedelta(hours=1)))

    assert len(changes) == 40
    # Each page restarts at the last one's final millisecond, whose deal it reads again: with
    # pages of 5 that is 4 new deals a page after the first, so 10 searches.
    assert fake.requests_to("POST", SEARCH) == 10
    assert fake.search_throttled == 0
    assert time.monotonic() - started >= 3.0  # 10 searches at 3 a second span four windows


def test_an_unpaced_burst_of_searches_meets_the_search_limits_429(fake, monkeypatch):
    from schemas.errors import VendorUnavailable

    monkeypatch.setattr("adapters.hubspot.SEARCH_PAGE", 5)
    fake.search_rate = (3, 1.0)
    deals_at(fake, [float(m) for m in range(40)])
    crm = reader(fake, search_pacer=Pacer(1000, 1.0))  # paced only to the account's budget

    with pytest.raises(VendorUnavailable, match="throttled"):
        list(crm.changed_deals(BASE, BASE + timedelta(hours=1)))
    assert fake.search_throttled >= 1

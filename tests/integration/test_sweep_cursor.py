"""The sweep cursor in the state store, on SQLite and a real PostgreSQL: one per CRM
account, kept to the millisecond, never moved back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

AT = datetime(2026, 3, 2, 9, 30, 15, 123000, tzinfo=UTC)


def test_an_account_never_swept_has_no_cursor(store):
    assert store.sweep_cursor("hubspot", "62515") is None


def test_a_cursor_is_kept_per_crm_account_to_the_millisecond(store):
    store.save_sweep_cursor("hubspot", "62515", AT)
    store.save_sweep_cursor("hubspot", "777", AT + timedelta(hours=1))

    assert store.sweep_cursor("hubspot", "62515") == AT
    assert store.sweep_cursor("hubspot", "777") == AT + timedelta(hours=1)
    assert store.sweep_cursor("pipedrive", "62515") is None


def test_a_later_end_advances_the_cursor_and_an_earlier_one_never_moves_it_back(store):
    store.save_sweep_cursor("hubspot", "62515", AT)
    store.save_sweep_cursor("hubspot", "62515", AT + timedelta(minutes=15))
    store.save_sweep_cursor("hubspot", "62515", AT + timedelta(minutes=5))

    assert store.sweep_cursor("hubspot", "62515") == AT + timedelta(minutes=15)

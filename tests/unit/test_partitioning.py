"""Which partition a project's messages go to, and which worker owns which partition."""

from __future__ import annotations

import pytest

from tests import builders as b
from worker.commands import main as cli
from worker.partitioning import UNREADABLE_PARTITION, assigned, partition_of, read
from worker.settings import load_settings


def owners(members: list[int], count: int) -> dict[int, set[int]]:
    return {m: assigned(m, members, count) for m in members}


def test_a_project_has_one_partition_in_every_process_and_release():
    # CRC-32, not hash(): a value fixed here must never change.
    assert partition_of("P-1001", 8) == 4
    assert partition_of("P-1002", 8) == 6


def test_the_lanes_and_the_partitions_read_one_project_id():
    project = b.project()
    for event in (b.closed_won(project), b.status_changed(project, "on_hold")):
        parsed, project_id = read(b.body(event))
        assert project_id == project["id"] == parsed.project_id


def test_an_unreadable_body_goes_to_a_fixed_partition():
    _, project_id = read(b"not json")
    assert project_id is None
    assert partition_of(project_id, 12) == UNREADABLE_PARTITION


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5, 7])
def test_workers_share_the_partitions_evenly_and_each_has_one_owner(workers):
    members = [1000 + 7919 * i for i in range(workers)]
    shares = owners(members, 12)
    everything = [p for share in shares.values() for p in share]
    assert sorted(everything) == list(range(12))  # each partition once
    sizes = [len(s) for s in shares.values()]
    assert max(sizes) - min(sizes) <= 1


def test_a_worker_joining_takes_a_share_and_the_others_keep_most_of_theirs():
    three = owners([11, 22, 33], 12)
    four = owners([11, 22, 33, 44], 12)
    assert len(four[44]) == 3
    kept = sum(len(three[m] & four[m]) for m in (11, 22, 33))
    assert kept >= 6  # of their 9, most stay put


def test_a_worker_leaving_hands_its_partitions_to_the_others():
    four = owners([11, 22, 33, 44], 12)
    three = owners([11, 22, 33], 12)
    assert set().union(*three.values()) == set(range(12))
    assert sum(len(four[m] & three[m]) for m in (11, 22, 33)) >= 6  # most stay put


def test_partitions_without_postgresql_stop_run_with_exit_2_naming_both_settings(
    monkeypatch, capsys
):
    monkeypatch.setenv("PROVISIONER_PARTITIONS", "4")
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", "sqlite:///unused.db")

    status = cli.main(["run"])

    _, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1
    assert "PROVISIONER_PARTITIONS" in err and "PROVISIONER_DATABASE_URL" in err


def test_partitions_on_postgresql_are_accepted(monkeypatch):
    monkeypatch.setenv("PROVISIONER_PARTITIONS", "4")
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", "postgresql://db/provisioner")
    assert load_settings().partitions == 4

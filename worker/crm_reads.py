"""The worker's ``DealReads``: the CRM adapters behind one read per burst of a deal.

CRMs send a deal's notifications in bursts (a stage change, an amount, an owner, all at
once) and more than once. The consumer's lanes run one deal's events one after another, so
the first event of a burst reads the deal and the rest would read it again, unchanged.

A read begun at time T shows every change the CRM had committed by T. A CRM notifies a
change only after committing it, so an event that reached this worker before T announces a
change that read already shows: it takes that read. An event that arrived after T may
announce a newer change, and reads again. So a burst of N events that arrive together costs
one read; a redelivery or retry (a new arrival) always reads afresh. The memory is a small
LRU per process; several worker processes each read once per burst they take.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from handlers.ports import CrmReader, DealSnapshot
from schemas.errors import VendorAuth

REMEMBERED = 4096  # deals


class SharedDealReads:
    def __init__(
        self,
        readers: Mapping[str, CrmReader],
        *,
        size: int = REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.readers = dict(readers)
        self.size = size
        self.clock = clock
        self.reads = 0  # calls to a CRM's read_deal, for tests and the log
        self._recent: OrderedDict[tuple[str, str], tuple[float, DealSnapshot]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, crm: str, deal_id: str, *, received_at: float | None) -> DealSnapshot:
        key = (crm, deal_id)
        with self._lock:
            recent = self._recent.get(key)
        if recent is not None and received_at is not None and recent[0] >= received_at:
            return recent[1]
        reader = self.readers.get(crm)
        if reader is None:
            raise VendorAuth(f"{crm} is not enabled: its API credentials are not set")
        began = self.clock()
        deal = reader.read_deal(deal_id)
        with self._lock:
            self.reads += 1
            self._recent[key] = (began, deal)
            self._recent.move_to_end(key)
            while len(self._recent) > self.size:
                self._recent.popitem(last=False)
        return deal

"""Salesforce Outbound Messages: the SOAP ``notifications`` call and its Ack (reference §2.1).

The XML comes from the internet, so it is read by defusedxml with DTDs, entities and
external references forbidden, within the body limit, and no deeper than ``MAX_DEPTH``
(an element tree that deep would cost memory and stack to build and free).

Salesforce signs nothing, and the ``OrganizationId`` is no secret (it is printed in public
web-to-lead forms). So the endpoint URL configured in Salesforce carries one:
``/webhooks/salesforce?token=<SALESFORCE_WEBHOOK_TOKEN>``, checked in constant time before
the body is read (``verify_token``); only then is the ``OrganizationId`` checked, as a
second guard against a message meant for another org. Salesforce's own advice (accept
only its IP ranges, check its client certificate at the TLS proxy) belongs in front of
this process. Each ``Notification`` becomes one ``crm.deal_changed`` whose id is
the notification ``Id``, which Salesforce keeps across its retries. Only Opportunities are
published; notifications about other objects are counted and acknowledged, since anything
but the Ack makes Salesforce retry for 24 hours.
"""

from __future__ import annotations

import hmac
import io
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from worker import metrics
from worker.ingress.deal_events import Outgoing, deal_changed
from worker.ingress.refusals import Malformed, Unauthorized
from worker.ingress.salesforce_ids import to_18

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
MAX_DEPTH = 16
DEAL_OBJECT = "Opportunity"
# Which field says when the change happened, by preference (the message holds the fields
# the admin chose; without any of them, the time of receipt is the best there is).
TIME_FIELDS = ("LastModifiedDate", "SystemModstamp", "CreatedDate")

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
).encode()
ACK_CONTENT_TYPE = "text/xml; charset=utf-8"


def _parse(body: bytes) -> Element:
    depth, root = 0, None
    try:
        for kind, element in iterparse(
            io.BytesIO(body),
            events=("start", "end"),
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        ):
            if kind == "start":
                depth += 1
                root = element if root is None else root
                if depth > MAX_DEPTH:
                    raise Malformed(f"XML nests deeper than {MAX_DEPTH} levels")
            else:
                depth -= 1
    except DefusedXmlException as exc:
        raise Malformed(f"XML refused: {type(exc).__name__}") from None
    except ParseError as exc:
        raise Malformed(f"body is not XML: {exc}") from None
    except (LookupError, ValueError):
        # expat asks Python for the codec the XML declaration names: an unknown name is a
        # LookupError, a codec expat cannot drive (UTF-7, UTF-32, idna) a ValueError.
        raise Malformed("XML declares an encoding this endpoint does not read") from None
    if root is None:
        raise Malformed("body is not XML: no element")
    return root


def verify_token(query_string: bytes, *, token: str) -> None:
    """Raises ``Unauthorized`` unless the query holds exactly one ``token``, equal to ours.
    The reason never repeats what was sent (the access log never holds the query)."""
    given = [
        value
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        if name == "token"
    ]
    if not given:
        raise Unauthorized("the endpoint URL's token is missing (?token=)")
    if len(given) > 1:
        raise Unauthorized("the endpoint URL carries more than one token")
    if not hmac.compare_digest(given[0].encode(errors="replace"), token.encode()):
        raise Unauthorized("the endpoint URL's token is wrong")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _fields(sobject: Element) -> dict[str, object]:
    fields: dict[str, object] = {}
    for child in sobject:
        if child.get(f"{{{XSI}}}nil") == "true":
            fields[_local(child.tag)] = None
        elif len(child):  # compound fields (addresses) nest one level
            fields[_local(child.tag)] = {_local(g.tag): g.text or "" for g in child}
        else:
            fields[_local(child.tag)] = child.text or ""
    return fields


def _occurred_at(fields: dict[str, object]) -> datetime:
    for name in TIME_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise Malformed(f"Salesforce {name} is not a time") from None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _notifications(root: Element) -> tuple[str, list[Element]]:
    call = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if root.tag != f"{{{SOAP}}}Envelope" or call is None:
        raise Malformed("not a Salesforce Outbound Message (SOAP notifications)")
    organization = (call.findtext(f"{{{OUTBOUND}}}OrganizationId") or "").strip()
    notifications = call.findall(f"{{{OUTBOUND}}}Notification")
    if len(notifications) > MAX_NOTIFICATIONS:
        raise Malformed(f"{len(notifications)} notifications, over {MAX_NOTIFICATIONS}")
    return organization, notifications


def _one(index: int, organization: str, notification: Element) -> Outgoing | None:
    notification_id = (notification.findtext(f"{{{OUTBOUND}}}Id") or "").strip()
    sobject = notification.find(f"{{{OUTBOUND}}}sObject")
    if not notification_id or sobject is None:
        raise Malformed(f"Salesforce notification {index} has no Id or no sObject")
    if sobject.get(f"{{{XSI}}}type", "").rpartition(":")[2] != DEAL_OBJECT:
        return None
    fields = _fields(sobject)
    deal_id = fields.get("Id")
    if not isinstance(deal_id, str) or not deal_id:
        raise Malformed(f"Salesforce notification {index}: the Opportunity has no Id")
    return deal_changed(
        crm="salesforce",
        account=organization,
        event_id=notification_id,
        deal_id=deal_id,
        occurred_at=_occurred_at(fields),
        change=fields,
    )


def translate(body: bytes, *, organization_id: str) -> tuple[list[Outgoing], int]:
    """The Opportunity notifications of a message from our organisation (18-char id)."""
    given, notifications = _notifications(_parse(body))
    canonical = to_18(given) or ""
    # Salesforce sends the 18-character id; an admin may have configured either form.
    if not hmac.compare_digest(canonical.encode(), organization_id.encode()):
        raise Unauthorized("OrganizationId is not this installation's organization")
    outgoing, ignored = [], 0
    for index, notification in enumerate(notifications):
        event = _one(index, organization_id, notification)
        if event is None:
            ignored += 1
        else:
            outgoing.append(event)
    if ignored:
        metrics.INGRESS_SKIPPED.labels("salesforce", "not_a_deal").inc(ignored)
    return outgoing, ignored

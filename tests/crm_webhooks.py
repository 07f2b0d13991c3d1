"""Builders for CRM webhook requests, signed the way each sender documents it, written
independently of ``worker.ingress`` so that tests check our verification against the
documents, not against itself. Random ids so shared infrastructure never collides."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
import uuid

from fakes.salesforce import salesforce_id

HUBSPOT_PATH = "/webhooks/hubspot"


def hubspot_deal_event(portal_id: int, **fields) -> dict:
    """One ``deal.propertyChange`` as HubSpot sends it (reference §1.1)."""
    return {
        "eventId": random.randrange(1, 2**40),
        "subscriptionId": random.randrange(1, 2**31),
        "portalId": portal_id,
        "appId": 54321,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": random.randrange(1, 2**40),
        "changeSource": "CRM_UI",
        "sourceId": "userId:9087123",
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        **fields,
    }


def hubspot_association_event(
    portal_id: int, from_id: int, to_id: int, association_type: str, *, removed=False
) -> dict:
    """A ``deal.associationChange``: no ``objectId``, the two sides and the type instead
    (HubSpot webhooks, "association change" payloads; reference crm-production)."""
    event = hubspot_deal_event(portal_id, subscriptionType="deal.associationChange")
    for name in ("objectId", "propertyName", "propertyValue"):
        del event[name]
    return {
        **event,
        "associationType": association_type,
        "fromObjectId": from_id,
        "toObjectId": to_id,
        "associationRemoved": removed,
        "isPrimaryAssociation": False,
    }


def hubspot_merge_event(portal_id: int, primary_id: int, merged_ids: list[int]) -> dict:
    """A ``deal.merge``: the surviving deal is ``primaryObjectId``, the others merged in."""
    event = hubspot_deal_event(portal_id, subscriptionType="deal.merge", objectId=primary_id)
    for name in ("propertyName", "propertyValue"):
        del event[name]
    return {**event, "primaryObjectId": primary_id, "mergedObjectIds": merged_ids}


def hubspot_v3_headers(secret: str, method: str, uri: str, body: bytes, ts_ms=None) -> dict:
    """HubSpot's v3 recipe: HMAC-SHA256 over method + URI + body + timestamp, base64.
    ``uri`` is the one HubSpot called, already as HubSpot signs it (escapes decoded)."""
    timestamp = str(int(time.time() * 1000) if ts_ms is None else ts_ms)
    source = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
    return {
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def pipedrive_deal_won(company_id: str, **meta) -> dict:
    """A ``change`` of a deal to ``won`` as Pipedrive webhooks v2 send it (reference §3)."""
    deal_id = random.randrange(1, 10**6)
    return {
        "meta": {
            "action": "change",
            "entity": "deal",
            "entity_id": str(deal_id),
            "id": str(uuid.uuid4()),
            "company_id": company_id,
            "user_id": "18487521",
            "correlation_id": str(uuid.uuid4()),
            "is_bulk_edit": False,
            "timestamp": "2026-11-27T14:25:28.000Z",
            "type": "general",
            "version": "2.0",
            "webhook_id": "99",
            "webhook_owner_id": "18487521",
            "change_source": "app",
            "attempt": 1,
            "host": "acme.pipedrive.com",
            "permitted_user_ids": ["18487521"],
            **meta,
        },
        "data": {
            "id": deal_id,
            "title": "Acme – Website rebuild",
            "value": 24000,
            "currency": "EUR",
            "status": "won",
            "stage_id": 5,
            "pipeline_id": 1,
            "org_id": 2,
            "custom_fields": {},
        },
        "previous": {"status": "open"},
    }


def pipedrive_v1_deal(company_id: int, *, retry: int = 0, **meta) -> dict:
    """An ``updated.deal`` as Pipedrive webhooks v1 send it ("Guide for Webhooks"; reference
    §Pipedrive): ids are numbers, ``timestamp`` is seconds, ``retry`` counts the tries."""
    deal_id = random.randrange(1, 10**6)
    now = time.time()
    action = meta.get("action", "updated")
    current = {"id": deal_id, "title": "Acme - Website rebuild", "status": "won",
               "stage_id": 5, "pipeline_id": 1, "org_id": 2, "user_id": 18487521}  # fmt: skip
    return {
        "v": 1,
        "matches_filters": {"current": []},
        "meta": {
            "v": 1,
            "action": action,
            "object": "deal",
            "id": deal_id,
            "company_id": company_id,
            "user_id": 18487521,
            "host": "acme.pipedrive.com",
            "timestamp": int(now),
            "timestamp_micro": int(now * 1_000_000),
            "permitted_user_ids": [18487521],
            "trans_pending": False,
            "is_bulk_update": False,
            "pipedrive_service_name": False,
            "change_source": "app",
            "matches_filters": {"current": []},
            "webhook_id": str(random.randrange(1, 10**7)),
            **meta,
        },
        "current": None if action == "deleted" else current,
        "previous": {"status": "open"} if action == "updated" else None,
        "event": f"{action}.{meta.get('object', 'deal')}",
        "retry": retry,
    }


def basic_auth(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def salesforce_message(organization_id: str, notifications: list[tuple[str, dict]]) -> bytes:
    """An Outbound Message (SOAP) with (notification Id, Opportunity fields) pairs."""
    parts = []
    for notification_id, fields in notifications:
        body = "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in fields.items())
        parts.append(
            f"<Notification><Id>{notification_id}</Id>"
            '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"{body}</sObject></Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization_id}</OrganizationId>"
        "<ActionId>04k5e000000XyZ1AAK</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/60.0/00D</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/60.0/00D</PartnerUrl>"
        + "".join(parts)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def salesforce_webhook_token() -> str:
    """A SALESFORCE_WEBHOOK_TOKEN: 43 URL-safe characters, as ``secrets.token_urlsafe``."""
    return secrets.token_urlsafe(32)


def salesforce_path(token: str | None) -> str:
    """The endpoint URL's path as configured in Salesforce's Outbound Message."""
    return "/webhooks/salesforce" + (f"?token={token}" if token is not None else "")


def opportunity(**fields) -> dict:
    return {
        "Id": salesforce_id("006"),
        "AccountId": salesforce_id("001"),
        "Name": "Acme - Website rebuild",
        "StageName": "Closed Won",
        "IsWon": "true",
        "LastModifiedDate": "2026-11-27T14:25:28.000Z",
        **fields,
    }


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def standard_webhook_headers(secret: str, body: bytes, ts=None, msg_id=None) -> dict:
    """Standard Webhooks: HMAC-SHA256 of ``id.timestamp.body`` with the base64 key."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time()) if ts is None else ts)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
        "Content-Type": "application/json",
    }


def dumps(value) -> bytes:
    return json.dumps(value).encode()

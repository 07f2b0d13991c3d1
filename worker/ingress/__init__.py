"""``provisioner ingress``: the CRM webhook ingress (contract, "CRM webhook ingress").

settings.py           IngressSettings, read and checked once at start-up
app.py                the routes: read the body within limits, verify, translate, publish
access.py             the outermost ASGI layer: one JSON access line a request, never a 500
refusals.py           why a request is refused, as exceptions carrying their HTTP status
publisher.py          one AMQP connection on the server's event loop, pipelined confirms
hubspot.py            HubSpot signatures v1/v2/v3 and the event array
pipedrive.py          Pipedrive webhooks v2 and v1 behind HTTP Basic
salesforce.py         Salesforce Outbound Messages (SOAP): the endpoint token, the Ack
salesforce_ids.py     Salesforce ids, 15- and 18-character forms
standard_webhooks.py  Standard Webhooks signatures around one inbound CloudEvent
deal_events.py        one crm.deal_changed per CRM notification, held to what the worker takes
strict_json.py        JSON for untrusted bodies: bounded, no NaN, one-line errors
server.py             uvicorn, configured for untrusted clients
"""

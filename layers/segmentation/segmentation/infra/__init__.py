"""AWS: the only code that knows the DynamoDB layouts, the bus, the queues and Secrets Manager.

:mod:`.profile_store` (profiles, aliases, memberships, history), :mod:`.shop_store` (what the
webhook path learns about a shop: products, carts), :mod:`.publisher` (EventBridge),
:mod:`.secrets` (webhook secrets), :mod:`.delivery_log` (deliveries accepted, for the opt-in
"duplicate" answer), :mod:`.queue`
(SQS work queues). Each implements a port of :mod:`segmentation.service.ports`.
"""

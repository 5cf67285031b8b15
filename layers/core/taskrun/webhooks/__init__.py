"""Webhooks: where a webhook may go, how it is signed and sent (`send`), and its deliveries:
recorded, queued, attempted under a lease and retried on a schedule (`deliveries`), each
kept as a record (`records`) in the deliveries table (`store`).
"""

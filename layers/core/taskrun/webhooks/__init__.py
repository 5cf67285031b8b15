"""Webhooks: where a webhook may go, how it is signed and sent (`send`), and its deliveries:
the table, the queue, leases, attempts and the retry schedule (`deliveries`).
"""

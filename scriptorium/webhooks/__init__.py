"""Completion webhooks: endpoints and secrets, signing, SSRF checks, retry schedule and delivery state.

Deliveries are rows written in the transaction that makes a document terminal; a sender on the
CPU queue claims due rows, posts them and records every attempt. Nothing here sends HTTP.
"""

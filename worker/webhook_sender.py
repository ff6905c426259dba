"""The webhook sender: claim due deliveries, POST them to a checked address, record every attempt.

Runs as the ``scriptorium.deliver_webhooks`` task on the CPU queue (beat asks every few
seconds). Each attempt re-checks the URL, resolves the host, refuses the attempt unless every
address is allowed, and connects to the first checked address while sending the original
``Host`` header and TLS server name, so DNS rebinding cannot redirect it. The whole attempt,
resolution included, is bounded by the total timeout. Redirects are never followed, proxies
from the environment are ignored, and connections are never reused.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import Session, sessionmaker

from scriptorium import __version__
from scriptorium.db.session import transaction
from scriptorium.logging import get_logger
from scriptorium.settings import Settings
from scriptorium.webhooks.addresses import (
    IPAddress,
    TargetRefused,
    WebhookTarget,
    addresses_from_getaddrinfo,
    choose_address,
    parse_networks,
    parse_target,
)
from scriptorium.webhooks.deliveries import DeliveryClaim, SentAttempt, claim_due, record_attempt
from scriptorium.webhooks.schedule import AttemptResult, RetryPolicy, Verdict
from scriptorium.webhooks.signing import signed_headers

log = get_logger(__name__)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
RUN_BUDGET_S = 60.0  # one task stops claiming after this; the next poll carries on
EXCERPT_BYTES = 1024
USER_AGENT = f"Scriptorium-Webhooks/{__version__}"


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    return addresses_from_getaddrinfo(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))


@dataclass
class SenderReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    stale: int = 0  # results dropped because another sender took the delivery over

    def count(self, verdict: Verdict | None) -> None:
        if verdict is None:
            self.stale += 1
        elif verdict is Verdict.DELIVERED:
            self.delivered += 1
        elif verdict is Verdict.RETRY:
            self.retrying += 1
        else:
            self.dead += 1


class WebhookSender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        resolver: Resolver = system_resolver,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings.webhooks
        self._public_url = settings.api.public_url
        self._allowed = parse_networks(self._settings.allowed_networks)
        self._resolver = resolver
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._policy = RetryPolicy(
            schedule_s=tuple(self._settings.retry_schedule_s),
            jitter=self._settings.retry_jitter,
            retry_after_max_s=self._settings.retry_after_max_s,
        )

    def run(self, *, budget_s: float = RUN_BUDGET_S) -> SenderReport:
        """Send due deliveries until none is due or the budget is spent."""
        return asyncio.run(self._run(budget_s))

    async def _run(self, budget_s: float) -> SenderReport:
        report = SenderReport()
        deadline = time.monotonic() + budget_s
        timeout = httpx.Timeout(self._settings.total_timeout_s, connect=self._settings.connect_timeout_s)
        async with httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            while time.monotonic() < deadline:
                claims = await asyncio.to_thread(self._claim)
                if not claims:
                    break
                report.claimed += len(claims)
                for verdict in await asyncio.gather(*(self._deliver(client, claim) for claim in claims)):
                    report.count(verdict)
        return report

    def _claim(self) -> list[DeliveryClaim]:
        with transaction(self._sessions) as session:
            return claim_due(
                session,
                limit=self._settings.batch_size,
                lease_s=self._settings.claim_lease_s,
                public_url=self._public_url,
            )

    async def _deliver(self, client: httpx.AsyncClient, claim: DeliveryClaim) -> Verdict | None:
        sent = await self._attempt(client, claim)
        verdict = await asyncio.to_thread(self._record, claim, sent)
        log.info(
            "webhook.attempt",
            delivery_id=str(claim.delivery_id),
            webhook_id=claim.message_id,
            event_type=claim.event_type,
            attempt=claim.attempt_no,
            status_code=sent.result.status_code,
            error=sent.result.error,
            latency_ms=sent.latency_ms,
            verdict=verdict.value if verdict is not None else "stale",
        )
        return verdict

    def _record(self, claim: DeliveryClaim, sent: SentAttempt) -> Verdict | None:
        with transaction(self._sessions) as session:
            return record_attempt(session, claim, sent, policy=self._policy, rng=self._rng)

    async def _attempt(self, client: httpx.AsyncClient, claim: DeliveryClaim) -> SentAttempt:
        """One POST of ``claim``; never raises for anything the receiver or the network does."""
        started_at = datetime.now(UTC)
        started = time.monotonic()
        address: IPAddress | None = None
        excerpt: str | None = None
        try:
            target = parse_target(claim.url, allow_http=self._settings.allow_http)
            async with asyncio.timeout(self._settings.total_timeout_s):
                address = choose_address(target.host, await self._resolve(target), self._allowed)
                result, excerpt = await self._post(client, claim, target, address)
        except TargetRefused as refused:
            result = AttemptResult(None, f"refused without connecting: {refused}")
        except TimeoutError:
            result = AttemptResult(None, f"no answer within {self._settings.total_timeout_s:g} s")
        except httpx.TimeoutException as timeout:
            result = AttemptResult(None, f"timed out: {type(timeout).__name__}")
        except httpx.HTTPError as error:
            result = AttemptResult(None, f"{type(error).__name__}: {error}")
        except OSError as error:  # resolution failed
            result = AttemptResult(None, f"could not resolve the host: {error}")
        except Exception as error:  # a poison delivery must not stop the others; it retries and dies
            log.exception("webhook.attempt_crashed", delivery_id=str(claim.delivery_id))
            result = AttemptResult(None, f"internal error: {type(error).__name__}")
        return SentAttempt(
            result=result,
            started_at=started_at,
            latency_ms=round((time.monotonic() - started) * 1000),
            address=str(address) if address is not None else None,
            response_excerpt=excerpt,
        )

    async def _resolve(self, target: WebhookTarget) -> list[IPAddress]:
        literal = target.literal_address
        return [literal] if literal is not None else await self._resolver(target.host, target.port)

    async def _post(
        self, client: httpx.AsyncClient, claim: DeliveryClaim, target: WebhookTarget, address: IPAddress
    ) -> tuple[AttemptResult, str]:
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            **signed_headers(claim.signing_secrets, claim.message_id, int(time.time()), claim.body),
        }
        extensions = {} if target.literal_address is not None else {"sni_hostname": target.host}
        request = client.build_request(
            "POST",
            httpx.URL(target.url).copy_with(host=str(address)),
            content=claim.body,
            headers=headers,
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            excerpt = await _read_excerpt(response)
        finally:
            await response.aclose()
        result = AttemptResult(response.status_code, _failure(response), response.headers.get("retry-after"))
        return result, excerpt


def _failure(response: httpx.Response) -> str | None:
    if response.is_success:
        return None
    if response.is_redirect:
        return f"HTTP {response.status_code}: redirects are not followed"
    return f"HTTP {response.status_code}"


async def _read_excerpt(response: httpx.Response) -> str:
    collected = b""
    async for chunk in response.aiter_raw():
        collected += chunk
        if len(collected) >= EXCERPT_BYTES:
            break
    return collected[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def deliver_webhooks(sessions: sessionmaker[Session], settings: Settings) -> SenderReport:
    """The task body: one sender run with the system resolver, well inside the task's time limit."""
    budget_s = min(RUN_BUDGET_S, settings.limits.page_soft_time_limit_s / 2)
    report = WebhookSender(sessions, settings).run(budget_s=budget_s)
    if report.claimed:
        log.info(
            "webhooks.sent",
            claimed=report.claimed,
            delivered=report.delivered,
            retrying=report.retrying,
            dead=report.dead,
            stale=report.stale,
        )
    return report

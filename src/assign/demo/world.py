"""The demo's world, built through the APIs like real users would: an operator creates servers,
sites, posting accounts and campaigns (admin API); an assign service reads the accounts and
sites and creates each campaign's links (worker API)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from assign.client import AsyncAdminClient, AsyncAssignClient
from assign.client.types import Request, ServerWithKey, ServiceType

T = TypeVar("T")


@dataclass(frozen=True)
class CampaignPlan:
    name: str
    service_type: ServiceType
    priority: int
    link_share: float
    account_share: float


#: the campaigns of the demo; the last one comes first but has few accounts: the account
#: cooldown paces it while the others use the free slots
CAMPAIGNS = (
    CampaignPlan("Brand entities", "entity", 10, 0.36, 0.40),
    CampaignPlan("Social signals", "social", 5, 0.30, 0.32),
    CampaignPlan("Podcast launch", "podcast", 0, 0.26, 0.24),
    CampaignPlan("Guest blogs (paced)", "blog20", 20, 0.08, 0.04),
)
THREADS = (16, 12, 20, 10, 24, 14, 18, 8)
SITES_PER_TYPE = 6
#: links per POST /links/bulk (at most 5,000)
CHUNK = 1000


@dataclass
class Campaign:
    plan: CampaignPlan
    request: Request
    group_id: str
    accounts: int
    links: int


def split(total: int, shares: Iterable[float], minimum: int = 1) -> list[int]:
    """``total`` split by ``shares`` (each part at least ``minimum``), summing to ``total``."""
    shares = list(shares)
    parts = [max(minimum, int(total * share)) for share in shares]
    parts[0] += total - sum(parts)
    return parts


async def gather_chunked(calls: Iterable[Awaitable[T]], width: int = 20) -> list[T]:
    """Await ``calls`` at most ``width`` at a time."""
    out: list[T] = []
    pending = list(calls)
    for start in range(0, len(pending), width):
        out.extend(await asyncio.gather(*pending[start : start + width]))
    return out


async def create_servers(admin: AsyncAdminClient, count: int) -> list[ServerWithKey]:
    """``count`` tool servers of various sizes; higher priority for the first half; the second
    one takes entity and social links only."""
    calls = []
    for i in range(count):
        types: list[ServiceType] | None = ["entity", "social"] if i == 1 else None
        calls.append(
            admin.create_server(
                f"tool-{i + 1:02d}",
                service="tool",
                max_threads=THREADS[i % len(THREADS)],
                priority=10 if i < count // 2 else 0,
                ip=f"10.0.0.{i + 11}",
                service_types=types,
            )
        )
    return await gather_chunked(calls)


async def create_campaigns(admin: AsyncAdminClient, *, links: int, accounts: int) -> list[Campaign]:
    """The campaigns with their posting accounts and sites (no links yet)."""
    link_counts = split(links, (p.link_share for p in CAMPAIGNS), minimum=5)
    account_counts = split(accounts, (p.account_share for p in CAMPAIGNS), minimum=2)
    campaigns = []
    for plan, n_links, n_accounts in zip(CAMPAIGNS, link_counts, account_counts, strict=True):
        group_id = str(uuid.uuid4())
        slug = plan.service_type
        await gather_chunked(
            admin.create_account(
                group_id, f"{slug}.poster{i:03d}@example.com", username=f"{slug}_poster{i:03d}",
                password=f"pw-{uuid.uuid4().hex[:12]}",
            )
            for i in range(n_accounts)
        )  # fmt: skip
        await gather_chunked(
            admin.create_site(f"{slug}{i:02d}.example", plan.service_type)
            for i in range(SITES_PER_TYPE)
        )
        request = await admin.create_request(
            plan.service_type,
            plan.name,
            website="https://brand.example",
            group_id=group_id,
            priority=plan.priority,
            target=n_links,
            config={"anchor": "brand"},
        )
        campaigns.append(Campaign(plan, request, group_id, n_accounts, n_links))
    return campaigns


async def create_links(worker: AsyncAssignClient, campaign: Campaign, rng: random.Random) -> int:
    """What an assign service does: build the campaign's links from its accounts and sites."""
    accounts = await worker.list_accounts(group_id=campaign.group_id, status="active", limit=1000)
    sites = await worker.list_sites(type=campaign.plan.service_type, active=True, limit=1000)
    links: list[dict[str, Any]] = []
    for i in range(campaign.links):
        account, site = accounts[i % len(accounts)], rng.choice(sites)
        link: dict[str, Any] = {
            "request_id": campaign.request["id"],
            "service_type": campaign.plan.service_type,
            "site_id": site["id"],
            "site_name": site["name"],
            "email": account["email"],
            "username": account["username"],
            "password": account.get("password"),
            "about": f"{campaign.plan.name}: link {i + 1}",
            "max_retries": 3,
            "details": {"anchor": "brand", "n": i + 1},
        }
        links.append(link)
    created = 0
    for start in range(0, len(links), CHUNK):
        key = f"{campaign.request['id']}:{start}"  # a batch sent twice is created once
        created += await worker.create_links(links[start : start + CHUNK], idempotency_key=key)
    return created

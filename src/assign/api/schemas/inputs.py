"""Request bodies of every surface."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from assign.api.schemas.common import DETAILS_SIZE, JSON_INT, Model
from assign.domain.states import SERVICE_TYPES, AccountStatus, RequestStatus, ServerStatus

ServiceType = Literal["entity", "social", "blog20", "stacking", "podcast", "indexing"]
assert set(ServiceType.__args__) == set(SERVICE_TYPES)  # type: ignore[attr-defined]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]
# numbers are JSON numbers: "5" or true is not an integer here (stored as 32-bit integers)
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1), JSON_INT]
Count = Annotated[int, Field(ge=0, le=2**31 - 1), JSON_INT]
Threads = Annotated[int, Field(ge=1, le=100_000), JSON_INT]
Price = Annotated[StrictFloat, Field(allow_inf_nan=False)]
#: a link's free-form ``details``: at most 64 KiB once encoded
Details = Annotated[dict[str, Any] | None, DETAILS_SIZE]
Service = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z0-9_\-]+$")]


class ServerStatusIn(Model):
    status: ServerStatus


class RequestStatusIn(Model):
    status: RequestStatus


class AssignIn(Model):
    server_id: uuid.UUID


#: The bounds of a created link, read by both link readers: :class:`LinkIn` and the bulk
#: create's fast reader (``api/bulk_body.FastLink``). The longest value of each text field:
LINK_TEXT_MAX = {
    "site_name": 500,
    "email": 320,
    "username": 200,
    "password": 1000,
    "about": 100_000,
}
#: ``max_retries`` from 0 to this
LINK_RETRIES_MAX = 1000
#: links in one ``POST /links/bulk`` (and ids in one bulk retry)
BULK_MAX = 5000


#: the text fields of a link, bounded by ``LINK_TEXT_MAX``
_SiteName = Annotated[str, StringConstraints(max_length=LINK_TEXT_MAX["site_name"])]
_Email = Annotated[str, StringConstraints(max_length=LINK_TEXT_MAX["email"])]
_Username = Annotated[str, StringConstraints(max_length=LINK_TEXT_MAX["username"])]
_Password = Annotated[str, StringConstraints(max_length=LINK_TEXT_MAX["password"])]
_About = Annotated[str, StringConstraints(max_length=LINK_TEXT_MAX["about"])]


class LinkIn(Model):
    request_id: uuid.UUID
    service_type: ServiceType
    server_id: uuid.UUID | None = None
    site_id: uuid.UUID | None = None
    site_name: _SiteName | None = None
    email: _Email | None = None
    username: _Username | None = None
    password: _Password | None = None
    about: _About | None = None
    max_retries: Annotated[int, Field(ge=0, le=LINK_RETRIES_MAX), JSON_INT] = 3
    details: Details = None


class LinksBulkIn(Model):
    links: list[LinkIn] = Field(
        min_length=1, max_length=BULK_MAX, description=f"1 to {BULK_MAX:,} links"
    )


class BulkRetryIn(Model):
    link_ids: list[uuid.UUID] = Field(min_length=1, max_length=BULK_MAX)


class MarkFinalFailedIn(Model):
    request_id: uuid.UUID | None = None


class HeartbeatIn(Model):
    active_threads: Count | None = None


def _json_number(value: Any) -> Any:
    # a JSON number: neither "5" nor true (which pydantic would take)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


class ClaimIn(Model):
    limit: Annotated[int, Field(ge=1, le=2**31 - 1, description="clamped to 1000"), JSON_INT] = 10
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=30,
            allow_inf_nan=False,
            description="when nothing is ready, wait up to this long for the dispatcher to "
            "place links on this server",
        ),
        BeforeValidator(_json_number),
    ] = 0


class ResultIn(Model):
    status: Literal["completed", "failed"]
    profile_url: ShortText | None = None
    post_url: ShortText | None = None
    error: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    details: Details = None


class ResultItemIn(ResultIn):
    id: uuid.UUID


class ResultsIn(Model):
    results: list[ResultItemIn] = Field(
        min_length=1, max_length=1000, description="1 to 1,000 results of this server's links"
    )

    def repeated(self) -> tuple[int, int] | None:
        """(first, later) indexes of the first id given twice, or None."""
        seen: dict[uuid.UUID, int] = {}
        for index, item in enumerate(self.results):
            if item.id in seen:
                return seen[item.id], index
            seen[item.id] = index
        return None


class ServerCreateIn(Model):
    name: Name
    ip: Annotated[str, StringConstraints(max_length=100)] | None = None
    service: Service
    max_threads: Threads = 10
    priority: Int32 = 0
    status: ServerStatus = ServerStatus.ONLINE
    service_types: list[ServiceType] | None = None


class ServerPatchIn(Model):
    name: Name | None = None
    ip: Annotated[str, StringConstraints(max_length=100)] | None = None
    max_threads: Threads | None = None
    priority: Int32 | None = None
    status: ServerStatus | None = None
    service_types: list[ServiceType] | None = None


class RequestCreateIn(Model):
    service_type: ServiceType
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    website: ShortText | None = None
    user_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None
    auction_price: Price | None = None
    target: Count | None = None
    type_request: Annotated[str, StringConstraints(min_length=1, max_length=50)] = "normal"
    priority: Int32 = 0
    status: RequestStatus = RequestStatus.PENDING
    config: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    folder_urls: dict[str, Any] | list[Any] | None = None


class RequestPatchIn(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    website: ShortText | None = None
    auction_price: Price | None = None
    target: Count | None = None
    type_request: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = None
    priority: Int32 | None = None
    status: RequestStatus | None = None
    config: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    folder_urls: dict[str, Any] | list[Any] | None = None


class SiteCreateIn(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    type: ServiceType
    active: StrictBool = True
    config: dict[str, Any] | None = None


class SitePatchIn(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    type: ServiceType | None = None
    active: StrictBool | None = None
    config: dict[str, Any] | None = None


class AccountCreateIn(Model):
    group_id: uuid.UUID
    email: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    username: Annotated[str, StringConstraints(max_length=200)] | None = None
    password: Annotated[str, StringConstraints(max_length=1000)] | None = None
    status: AccountStatus = AccountStatus.ACTIVE


class AccountPatchIn(Model):
    email: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    username: Annotated[str, StringConstraints(max_length=200)] | None = None
    password: Annotated[str, StringConstraints(max_length=1000)] | None = None
    status: AccountStatus | None = None


class SettingsIn(Model):
    settings: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=200)],
        Annotated[str, StringConstraints(max_length=10_000)] | StrictInt | StrictFloat | StrictBool,
    ] = Field(description="values are stored as strings")

    @field_validator("settings")
    @classmethod
    def _as_strings(cls, value: dict[str, Any]) -> dict[str, str]:
        return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}

    def stored(self) -> dict[str, str]:
        """The values as they are stored (strings, made so by the validator)."""
        return {k: str(v) for k, v in self.settings.items()}

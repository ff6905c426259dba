"""API keys a tenant manages itself: rotation without an outage."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.deps import RuntimeDep, TenantDep, UnitOfWorkDep
from api.schemas import error_responses
from scriptorium.api_keys import rotate_key
from scriptorium.db.models import ApiKey

router = APIRouter(prefix="/v1", tags=["keys"])


class PreviousKey(BaseModel):
    id: uuid.UUID
    expires_at: datetime = Field(description="the key used for this request stops working then")


class RotatedKey(BaseModel):
    id: uuid.UUID
    key: str = Field(description="the new API key; shown only in this answer, store it now")
    prefix: str
    created_at: datetime
    previous: PreviousKey


@router.post(
    "/keys/rotate",
    status_code=201,
    response_model=RotatedKey,
    responses=error_responses(401, 409, 429),
    summary="Replace the calling API key: a new key, the old one keeps working for a grace period",
    description="The grace period is `SCRIPTORIUM_API__KEY_ROTATION_GRACE_S`; afterwards the old key "
    "answers 401 `api_key_expired`. A key in its grace period cannot rotate again "
    "(409 `api_key_already_rotated`).",
)
def rotate(
    request: Request, response: Response, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> RotatedKey:
    session = uow.session
    calling_key: uuid.UUID = request.state.api_key_id
    grace = timedelta(seconds=runtime.settings.api.key_rotation_grace_s)
    issued = rotate_key(session, calling_key, grace=grace)
    new_row = session.get_one(ApiKey, issued.key_id)
    old_row = session.get_one(ApiKey, calling_key)
    answer = RotatedKey(
        id=new_row.id,
        key=issued.key,
        prefix=new_row.prefix,
        created_at=new_row.created_at,
        previous=PreviousKey(id=old_row.id, expires_at=old_row.expires_at),
    )
    uow.commit()
    response.headers["Cache-Control"] = "no-store"
    return answer

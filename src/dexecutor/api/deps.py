"""FastAPI dependencies: the process's services and small parsers shared by routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from dexecutor.api.errors import ApiError
from dexecutor.engine.intake import Intake
from dexecutor.runtime import Services


def services(conn: HTTPConnection) -> Services:
    svc: Services = conn.app.state.services
    return svc


def intake(request: Request) -> Intake:
    svc: Intake = request.app.state.intake
    return svc


ServicesDep = Annotated[Services, Depends(services)]
IntakeDep = Annotated[Intake, Depends(intake)]


def parse_order_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ApiError(
            400, "invalid_order_id", f"{text[:60]!r} is not an order id (a UUID)"
        ) from None

"""The examples in /docs are answers the API could give: each matches its response model."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from dexecutor.api import examples as ex
from dexecutor.api import views


@pytest.mark.parametrize(
    ("model", "example"),
    [
        (views.OrderView, ex.ORDER),
        (views.OrderView, ex.CANCELLED),
        (views.HistoryView, ex.HISTORY),
        (views.EventsView, ex.EVENTS),
        (views.QuoteView, ex.QUOTE),
        (views.QuoteView, ex.QUOTE_EXACT_OUT),
        (views.StatusView, ex.STATUS),
        (views.BalancesView, ex.BALANCES),
    ],
    ids=[
        "order",
        "cancelled",
        "history",
        "events",
        "quote",
        "quote-exact-out",
        "status",
        "balances",
    ],
)
def test_examples_match_their_views(model: type[BaseModel], example: Any) -> None:
    model.model_validate(example)


def test_every_documented_refusal_has_an_error_code() -> None:
    assert set(ex.REFUSALS) == set(ex.ERROR_CODES)
    for status, response in ex.refusals(*ex.REFUSALS).items():
        body = response["content"]["application/json"]["example"]
        views.ErrorView.model_validate(body)
        assert body["error"] == ex.ERROR_CODES[int(status)]

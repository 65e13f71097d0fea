"""Paging of Describe* answers, shared by every action that lists resources.

ECS pages a listing in one of two ways: ``PageNumber``/``PageSize``, or ``NextToken``/
``MaxResults`` (chosen as soon as either of the latter is present). The token is the hex
sequence number of the last item shown, so a page stays stable while items are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from csi_disk_emulator.actions import Params
from csi_disk_emulator.errors import invalid_parameter


@dataclass(frozen=True)
class Paging:
    """One request's paging parameters, checked."""

    token_mode: bool
    page_number: int
    page_size: int
    max_results: int
    start: int

    @classmethod
    def parse(cls, p: Params, max_results_limit: int = 100, default_page_size: int = 10) -> Paging:
        """Read and check the paging parameters; a token that is not hex is invalid."""
        page_number = p.int("PageNumber", 1, 1) or 1
        page_size = p.int("PageSize", default_page_size, 1, 100) or default_page_size
        max_results = p.int("MaxResults", 10, 1, max_results_limit) or 10
        start = 0
        if p.str("NextToken"):
            try:
                start = int(p.str("NextToken"), 16)
            except ValueError:
                raise invalid_parameter("NextToken") from None
        return cls(
            token_mode="NextToken" in p.raw or "MaxResults" in p.raw,
            page_number=page_number,
            page_size=page_size,
            max_results=max_results,
            start=start,
        )

    def body(self, found: list[tuple[int, dict[str, Any]]], key: str, item: str) -> dict[str, Any]:
        """The answer for ``found`` (``(seq, view)`` in seq order): counts, paging fields and
        the page itself as ``{key: {item: [...]}}``."""
        body: dict[str, Any] = {"TotalCount": len(found)}
        if self.token_mode:
            page = [(seq, v) for seq, v in found if seq > self.start][: self.max_results]
            more = bool(page) and found[-1][0] > page[-1][0]
            body["NextToken"] = format(page[-1][0], "x") if more else ""
            body["PageSize"] = self.max_results
        else:
            first = (self.page_number - 1) * self.page_size
            page = found[first : first + self.page_size]
            body["PageNumber"] = self.page_number
            body["PageSize"] = self.page_size
        body[key] = {item: [v for _, v in page]}
        return body

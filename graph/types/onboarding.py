"""The Onboarding Tool's list: a keyset-paginated connection with counts per status."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)

from graph.cursors import Cursors
from graph.types.common import PageInfo, PageRequest
from graph.types.enums import PortalStatus, Reachability
from graph.types.patient import Patient
from onboarding.listing import OnboardingFilter as FilterData
from onboarding.listing import Page, PageWants, PatientReader, SortKey


@strawberry.input(description="The Onboarding Tool's filter.")
class OnboardingFilter:
    status: list[PortalStatus] | None = strawberry.field(
        default=None, description="Any of these statuses; empty or absent: any status."
    )
    search: str | None = strawberry.field(
        default=None, description="Words matched against name, chart number and email."
    )
    has_email: bool | None = None
    reachable_by: list[Reachability] | None = strawberry.field(
        default=None,
        description="Patients a link can reach now by any of these: EMAIL (an address),"
        " SMS (a mobile phone with consent to texts) or NONE (neither: NO_EMAIL's meaning).",
    )

    def to_data(self) -> FilterData:
        return FilterData(
            # An empty list filters nothing, as an absent one (not "no status at all").
            statuses=list(self.status) if self.status else None,
            search=self.search,
            has_email=self.has_email,
            reachable_by=[c.value for c in self.reachable_by]
            if self.reachable_by is not None
            else None,
        )


@strawberry.type
class PatientEdge:
    cursor: str
    node: Patient


@strawberry.type
class StatusCount:
    status: PortalStatus
    count: int


@strawberry.type
class PatientConnection:
    edges: list[PatientEdge]
    page_info: PageInfo
    _reader: strawberry.Private[PatientReader]
    _filter: strawberry.Private[FilterData | None]
    _counts: strawberry.Private[asyncio.Future[dict[PortalStatus, int]] | None] = None
    # Counts the page statement brought along (the query asked for them).
    _known_counts: strawberry.Private[dict[PortalStatus, int] | None] = None

    async def _status_counts(self) -> dict[PortalStatus, int]:
        if self._known_counts is not None:
            return self._known_counts
        # totalCount and statusCounts share one grouped query.
        if self._counts is None:
            self._counts = asyncio.ensure_future(self._reader.status_counts(self._filter))
        return await self._counts

    @strawberry.field(description="Patients matching the whole filter, status part included.")
    async def total_count(self) -> int:
        counts = await self._status_counts()
        wanted = self._filter.statuses if self._filter and self._filter.statuses else None
        return sum(n for s, n in counts.items() if wanted is None or s in wanted)

    @strawberry.field(description="Count per status for the same filter without its status part.")
    async def status_counts(self) -> list[StatusCount]:
        counts = await self._status_counts()
        return [StatusCount(status=s, count=counts[s]) for s in PortalStatus]


def _fields(
    selection_sets: Iterable[SelectionSetNode | None],
    fragments: dict[str, FragmentDefinitionNode],
) -> dict[str, list[SelectionSetNode | None]]:
    """Field name -> the selection sets below it, fragments flattened. Each named
    fragment is read once per level, so a chain of fragments costs its length, not
    2^length (Strawberry's ``selected_fields`` expands them as trees)."""
    found: dict[str, list[SelectionSetNode | None]] = defaultdict(list)
    seen: set[str] = set()
    stack = [s for s in selection_sets if s is not None]
    while stack:
        for node in stack.pop().selections:
            if isinstance(node, FieldNode):
                found[node.name.value].append(node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                stack.append(node.selection_set)
            elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
                seen.add(node.name.value)
                fragment = fragments.get(node.name.value)
                if fragment is not None:
                    stack.append(fragment.selection_set)
    return found


def page_wants(raw: GraphQLResolveInfo) -> PageWants:
    """What the onboarding field's selection asks for beyond patient columns, read
    from the document (directives ignored: asking for a skipped field only costs a
    join)."""
    top = _fields((f.selection_set for f in raw.field_nodes), raw.fragments)
    edges = _fields(top.get("edges", []), raw.fragments)
    node = _fields(edges.get("node", []), raw.fragments)
    return PageWants(
        account="account" in node,
        invitation="lastInvitation" in node,
        shared="emailSharedWith" in node,
        counts="totalCount" in top or "statusCounts" in top,
    )


def connection_from_page(
    reader: PatientReader,
    cursors: Cursors,
    flt: FilterData | None,
    request: PageRequest,
    boundary: SortKey | None,
    page: Page,
) -> PatientConnection:
    edges = [
        PatientEdge(cursor=cursors.patient(r.sort_key), node=Patient.from_row(r)) for r in page.rows
    ]

    async def other_side() -> bool:
        # Rows on the cursor's side of the page: asked only when a client selects it.
        if boundary is None:
            return False
        return await reader.any_beyond(boundary, flt, before=not request.backward)

    return PatientConnection(
        edges=edges,
        page_info=PageInfo(
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
            _has_next=other_side if request.backward else page.has_more,
            _has_previous=page.has_more if request.backward else other_side,
        ),
        _reader=reader,
        _filter=flt,
        _known_counts=page.counts,
    )

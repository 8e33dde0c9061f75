"""What Kopf compares an SLA or a NetworkSlice with: the generation its status says was handled.

Kopf tells a create from an update from nothing new by comparing an object with its "diff
base", the essence it last handled, which it stores by default in an annotation: one more PATCH
of every object after each handled change, and one more watch event back (at 1000 SLAs, two of
the operator's 40 writes per SLA: the SLA's and its slice's). Both handlers already end with a
status write that carries `observedGeneration`, and the API server bumps `metadata.generation`
on every change of the spec (both CRDs have a status subresource), so the base is read from
them instead, and nothing more is written:

- a change handler still in progress (Kopf's progress record, kept while it retries): the
  change it is handling, by the record's purpose: a create has no base, an update a base whose
  spec differs, a resume the object itself. A failed reconcile writes its own status before
  Kopf records the retry; the record, not that status, says the change is not handled yet;
- else no `status.observedGeneration`: never handled, a create;
- else an `observedGeneration` below the generation: a spec not handled yet, an update;
- else the object itself: nothing new.

Kopf, after a PATCH of its own, waits until the watch brings that version back before it runs a
change handler again, so an event queued while the handler ran (older than the handler's own
status write: no `observedGeneration` yet) is never taken for a change still to handle. With no
PATCH of Kopf's there is no such wait: the generation each change handler ended with is kept in
memory too, by uid (`store`), and counts as handled whatever an older event's status says.

The handlers of these kinds ask for changes of `spec` only (`field="spec"`): a change of labels
or annotations, which Kopf's annotation would have recorded with one more PATCH, is nothing new
here either. The other kind with change handlers, InferenceTier (its handler writes no status),
keeps Kopf's annotation. Operators before this one left that annotation on SLAs and slices; it is
read no more and does no harm.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import cast

import kopf

from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE, SLA

UPDATE_MARK = "aiconn.io/handled-generation"
"""The one key of the spec of an update's base (`{UPDATE_MARK: observedGeneration}`): every field
of the real spec differs from it, so the diff names `spec` whatever the spec holds."""


class GenerationDiffBase(kopf.DiffBaseStorage):
    """Kopf's diff base for the kinds in `handlers` (kind -> the ids of its change handlers),
    read from the status generation; `fallback` for every other kind."""

    def __init__(
        self,
        *,
        progress: kopf.ProgressStorage,
        handlers: Mapping[str, Iterable[str]],
        fallback: kopf.DiffBaseStorage,
        remembered: int = 16_384,
    ) -> None:
        super().__init__()
        self.progress = progress
        self.handlers = {kind: tuple(ids) for kind, ids in handlers.items()}
        self.fallback = fallback
        self.remembered = remembered
        self._handled: collections.OrderedDict[str, int] = collections.OrderedDict()
        """The generation each object's change handler last ended with, by uid (the most recent
        `remembered`; one forgotten costs at most a reconcile more, at an older event)."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        ids = self.handlers.get(str(body.get("kind")))
        if ids is None:
            return self.fallback.fetch(body=body)
        purpose, handled = self._change(body, ids)
        if purpose == "create":
            return None
        current = self.build(body=body)
        if purpose == "update":
            return cast(kopf.BodyEssence, {**current, "spec": {UPDATE_MARK: handled}})
        return current

    def awaits_create(self, *, body: kopf.Body) -> bool:
        """Whether the object's create handler has yet to succeed: what `fetch` tells Kopf with
        no base, without building the base (asked on every watch event of an SLA)."""
        ids = self.handlers.get(str(body.get("kind")))
        if ids is None:
            return self.fallback.fetch(body=body) is None
        return self._change(body, ids)[0] == "create"

    def _change(self, body: kopf.Body, ids: tuple[str, ...]) -> tuple[str, int | None]:
        """The change still to handle ("create", "update", or "" for none) and the generation
        last handled (the status's, or a newer one this run's handlers ended with)."""
        purpose = self._purpose_in_progress(body, ids)
        handled = (body.get("status") or {}).get("observedGeneration")
        ended = self._handled.get(str(body["metadata"].get("uid")))
        if ended is not None and (handled is None or ended > handled):
            handled = ended
        if purpose is None:
            generation = body["metadata"].get("generation") or 0
            purpose = "create" if handled is None else "update" if handled < generation else ""
        return purpose, handled

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if str(body.get("kind")) not in self.handlers:
            self.fallback.store(body=body, patch=patch, essence=essence)
            return
        # The handler's status write was the record: nothing to write; the generation it
        # handled is kept for the events already queued behind it.
        uid = str(body["metadata"].get("uid"))
        generation = int(body["metadata"].get("generation") or 0)
        self._handled[uid] = max(generation, self._handled.get(uid, 0))
        self._handled.move_to_end(uid)
        while len(self._handled) > self.remembered:
            self._handled.popitem(last=False)

    def forget(self) -> None:
        """Drop what this run of the operator handled (at its cleanup): the next run starts from
        the objects' status alone, as a new process would."""
        self._handled.clear()

    def _purpose_in_progress(self, body: kopf.Body, ids: tuple[str, ...]) -> str | None:
        for handler_id in ids:
            record = self.progress.fetch(key=kopf.HandlerId(handler_id), body=body)
            if record is not None and not record.get("success"):
                return str(record.get("purpose") or "create")
        return None


class UnmarkedProgress(kopf.AnnotationsProgressStorage):
    """Kopf's progress annotations, without the marker Kopf adds to each object the first time a
    handler runs (`aiconn.io/kopf-managed: yes`, which tells other Kopf operators handling the
    same objects that the prefix's annotations are Kopf's, to leave them out of what they
    compare). No other operator handles these kinds, and this operator strips its prefix from
    what it compares anyway (`clear`). With the diff base read from the status, that marker was
    all that was left of Kopf's PATCH of every new SLA and NetworkSlice; a retrying handler's
    progress is written as before."""

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return None


CHANGE_HANDLERS = {
    SLA.kind: ("sla_changed", "sla_changed/spec"),
    NETWORK_SLICE.kind: ("slice_changed", "slice_changed/spec"),
}
"""The ids Kopf gives the change handlers of each kind (`handlers.sla_changed` on create and
resume, and on update of `spec` with the field as a suffix; the same for slices)."""

"""The tasks and people on a Harvest project: task assignments (billable as the rules say,
with task budgets), user assignments (person budgets, project managers), and the kept reads
of users and tasks they are made from.

Facts this relies on (Harvest's API v2 reference, help.getharvest.com/api-v2):
- a task assignment is non-billable unless ``billable`` is sent, and a user assignment of a
  manager or administrator makes them project manager unless ``is_project_manager`` is
  sent; ``budget_by`` task / person budget the assignments, not the project;
- ``GET /tasks`` and assignment lists include archived ones (``is_active``).

Users (by e-mail) and tasks (by name) are read once and kept for a few minutes in a
``ReadCache`` (see ``adapters.read_cache`` for what may be kept and why): a steady run of
provisionings then costs no ``GET /users`` or ``GET /tasks``. A kept task id Harvest refuses
(422 on the assignment, the task deleted or archived since) is dropped and the assignment made
once more from a fresh read; a kept user id refused so is dropped and the provisioning tried
again (``StaleRead``), since the team it reports must be read afresh. Clients are always
read fresh: that look-up guards "no second client".

Status codes are translated by ``VendorHttp``. A 422 is Harvest's general "could not process"
(HV-DOCS overview), so it never means "already assigned" by itself: assignments are decided
from the project's listed assignments, and a 422 is a refusal unless the listing shows the
assignment made meanwhile.

A mixin of ``adapters.harvest.HarvestTool``, which owns ``http``, ``reads`` and the set of
projects it just made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.harvest_ids import UNPROCESSABLE, _folded, _names, _numeric
from adapters.http import default_error_text
from adapters.read_cache import StaleRead
from handlers.ports import ProjectSpec, SetupReport
from schemas.errors import VendorRejected


class HarvestAssignments:
    def complete_setup(self, project_id: str, spec: ProjectSpec) -> SetupReport | None:
        """Copies the template's task assignments, assigns the rules' tasks (billable as the
        offering, unless the rules say), puts the task or person budgets on the assignments,
        and sees that the project holds the money the client's currency allows. Decided from
        what the project lists, not from a 422 (Harvest's 422 is any processing error), so
        that this runs again safely: an assignment already there keeps its settings."""
        with self._fresh_lock:
            self._fresh.discard(project_id)  # its team is done: bounded, whatever came first
        report = self._complete_money(project_id, spec)
        options = spec.options
        budget_by = options.get("budget_by", "project")
        path = f"{self._path(project_id)}/task_assignments"
        if spec.template and (gone := self._copy_template(spec.template, path)):
            report = SetupReport(
                report.budget_set if report else True,
                (*(report.warnings if report else ()), gone),
                report.left_out if report else frozenset(),
            )
        names = _names(options.get("tasks") or [])
        wanted = self._task_ids(names)
        if wanted:
            task_billable = options.get("task_billable")
            billable = spec.billable if task_billable is None else bool(task_billable)
            on = {a["task"]["id"]: a for a in self.http.pages(path, "task_assignments")}
            for name, task_id in zip(names, wanted, strict=True):
                body: dict[str, Any] = {"task_id": task_id, "billable": billable}
                if budget_by == "task" and spec.budget_hours is not None:
                    body["budget"] = spec.budget_hours  # the rules allow one task only
                present = on.get(task_id)
                if present is None:
                    self._assign_task(path, body, name)
                    continue
                # Already there (a default task, or an earlier run): its billability is left
                # as it is; what is missing (active, the task budget) is added.
                missing = {"is_active": True} if not present.get("is_active", True) else {}
                if "budget" in body and present.get("budget") != body["budget"]:
                    missing["budget"] = body["budget"]
                if missing:
                    self._patch(f"{path}/{present['id']}", missing)
        if budget_by == "person" and spec.team_hours:
            path = f"{self._path(project_id)}/user_assignments"
            for a in self.http.pages(path, "user_assignments"):
                hours = spec.team_hours.get(str(a["user"]["id"]))
                if hours is not None and a.get("budget") != hours:
                    self._patch(f"{path}/{a['id']}", {"budget": hours})
        if options.get("project_managers"):
            path = f"{self._path(project_id)}/user_assignments"
            for a in self.http.pages(path, "user_assignments"):
                if not a.get("is_project_manager"):
                    self._patch(f"{path}/{a['id']}", {"is_project_manager": True})
        return report

    def _assign_task(self, path: str, body: dict[str, Any], name: str) -> None:
        """A refused assignment of a kept task id is made once more with a fresh read of
        the tasks: the task may have been deleted, archived or made again since we read."""
        try:
            self._post_assignment(path, body, "task", body["task_id"])
        except VendorRejected as refused:
            if refused.status != 422 or self.reads.get(("task", _folded(name))) is None:
                raise
            self.reads.drop(("task", _folded(name)))
            fresh = self._task_ids([name])[0]  # a gone or archived task is refused here
            if fresh == body["task_id"]:
                raise
            self._post_assignment(path, {**body, "task_id": fresh}, "task", fresh)

    def _post_assignment(self, path: str, body: dict[str, Any], kind: str, who: int) -> None:
        """POSTs an assignment; a 422 counts as done only if the assignment is now listed
        (a concurrent worker made it), else it is the vendor's refusal, in its words."""
        response = self.http.request("POST", path, json=body, ok_statuses=UNPROCESSABLE)
        if response.status_code != 422:
            return
        listed = self.http.pages(path, f"{kind}_assignments")
        if not any(a[kind]["id"] == who and a.get("is_active", True) for a in listed):
            text = default_error_text(response)
            raise VendorRejected(f"harvest POST {path}: 422 {text}".strip(), 422)

    def _patch(self, path: str, body: dict[str, Any]) -> None:
        self.http.request("PATCH", path, json=body)

    def _task_ids(self, names: Sequence[str]) -> list[int]:
        names = _names(names)
        kept = [self.reads.get(("task", _folded(n))) for n in names]
        if all(task_id is not None for task_id in kept):
            return kept
        # GET /tasks lists archived tasks too (HV-DOCS tasks); an active one of the same
        # name wins over an archived one. Only active ones are kept: an archived task is as
        # good as missing, and is read again until a person restores it.
        listed = sorted(self.http.pages("/tasks", "tasks"), key=lambda t: t["is_active"])
        known = {_folded(t["name"]): (t["id"], t["is_active"]) for t in listed}
        for folded, (task_id, active) in known.items():
            if active:
                self.reads.put(("task", folded), task_id)
        missing = [n for n in names if _folded(n) not in known]
        if missing:
            raise VendorRejected(f"harvest has no task named {', '.join(map(repr, missing))}")
        archived = [n for n in names if not known[_folded(n)][1]]
        if archived:
            raise VendorRejected(
                f"harvest task {', '.join(map(repr, archived))} is archived; restore it in"
                " Harvest or remove it from [harvest] tasks"
            )
        return [known[_folded(n)][0] for n in names]

    # -- people ---------------------------------------------------------------------------
    def find_users(self, emails: Sequence[str]) -> dict[str, str]:
        wanted = {e.strip().lower() for e in emails}
        kept = {e: self.reads.get(("user", e)) for e in wanted}
        if all(kept.values()):
            return kept
        active = self._active_users()
        return {e: active[e] for e in wanted if e in active}

    def _active_users(self) -> dict[str, str]:
        """E-mail -> id of every active user, read now and kept."""
        active: dict[str, str] = {}
        for user in self.http.pages("/users", "users"):
            email = (user.get("email") or "").strip().lower()
            # An archived user cannot track time, so for a team they are as good as missing.
            if email and user.get("is_active", True):
                active[email] = str(user["id"])
                self.reads.put(("user", email), active[email])
        return active

    def _user_went_stale(self, user_id: str) -> bool:
        """Whether ``user_id`` came from a kept read and a fresh one no longer has it active."""
        return self.reads.went_stale("user", user_id, lambda: self._active_users().values())

    def assign_team(self, project_id: str, user_ids: Sequence[str]) -> None:
        """Adds the users; an archived assignment (``is_active`` false, listed too) is
        restored, since its user could not log time. New assignments say
        ``is_project_manager: false``: Harvest's default makes managers and administrators
        project managers (``complete_setup`` promotes them when the rules say so)."""
        path = f"{self._path(project_id)}/user_assignments"
        with self._fresh_lock:
            fresh = project_id in self._fresh
            self._fresh.discard(project_id)
        if fresh:
            try:
                for user_id in dict.fromkeys(user_ids):
                    self._post_user(path, user_id)
                return
            except VendorRejected as refused:
                if refused.status != 422:
                    raise
                # Something was there after all (a person, or Harvest for a user with access
                # to all future projects): decided from the listing, as for any project.
        assigned = {str(a["user"]["id"]): a for a in self.http.pages(path, "user_assignments")}
        for user_id in dict.fromkeys(user_ids):
            present = assigned.get(user_id)
            if present is not None:
                if not present.get("is_active", True):
                    self._patch(f"{path}/{present['id']}", {"is_active": True})
                continue
            self._post_user(path, user_id)

    def _post_user(self, path: str, user_id: str) -> None:
        who = _numeric(user_id, "user")
        body = {"user_id": who, "is_project_manager": False}
        try:
            self._post_assignment(path, body, "user", who)
        except VendorRejected as refused:
            if refused.status == 422 and self._user_went_stale(user_id):
                raise StaleRead(
                    f"harvest user {user_id} is no longer active; the team is read"
                    " again on the next attempt"
                ) from None
            raise

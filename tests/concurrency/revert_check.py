"""Check that each race test (issue 9; the re-checks of stop 29) fails when its fix is reverted.

Each entry names a file, the text of the fix, what to put back instead, and the tests
(-k) that must then fail. The script edits the file, runs those tests, and restores the
file; it is run by hand, not by CI (it rewrites source files while it runs):

    .venv/bin/python tests/concurrency/revert_check.py ""            # SQLite
    .venv/bin/python tests/concurrency/revert_check.py "$PG_URL"     # PostgreSQL
    .venv/bin/python tests/concurrency/revert_check.py "" M1 M5      # some entries only
"""

import subprocess
import sys

muts = {
    "M1 change_password ignores a reset": (
        "onboarding/login.py",
        "and fresh.password_hash == account.password_hash\n            and portal_usable(current_patient)\n            and not locked(fresh, utcnow())\n            and await change.session_live(session.id)",
        "",
        "test_1",
    ),
    "M2 login no re-check": (
        "onboarding/login.py",
        "    if fresh.password_hash != seen.password_hash or not _usable(fresh, settings, utcnow()):\n        return None\n",
        "",
        "test_2 or test_5",
    ),
    "M5 lock-out not re-checked under the lock": (
        "onboarding/login.py",
        "    if fresh.password_hash != seen.password_hash or not _usable(fresh, settings, utcnow()):",
        "    if fresh.password_hash != seen.password_hash or not portal_usable(fresh.patient):",
        "test_5",
    ),
    "M3 dob on stale link": (
        "onboarding/redemption.py",
        "        link, error = await change.link(link_id)\n        patient = change.patient(patient_id)\n",
        "        link, error = state.link, None\n        patient = change.patient(patient_id)\n",
        "test_3",
    ),
    "M4 plan before lock": (
        "onboarding/invitations.py",
        '    await checkpoints.reached("invite.before_lock")\n',
        '    _, before = await resolve_patients(practice_id, raw_ids)\n    await checkpoints.reached("invite.before_lock")\n',
        "test_4_an_invitation",
    ),
    "M6 change_password not counted": (
        "onboarding/login.py",
        '            await change.count_login_failure(\n                fresh, settings, reason="change_password", count=not ok\n            )\n',
        "",
        "test_6_change_password_counts",
    ),
    "M7 old expiry rule": (
        "onboarding/unit_of_work.py",
        "and (account.last_login_at is None or account.last_login_at < set_at)",
        "and account.last_login_at is None",
        "test_7_a_temporary",
    ),
    "M7b full access ignored": (
        "graph/context.py",
        "        if not self.session.full_access and not restricted_ok:",
        "        if False:",
        "test_7_a_must_change",
    ),
    "M8 staff may choose email": (
        "onboarding/credentials.py",
        "    reason = staff_username_problem(username)",
        "    reason = username_problem(username, own_email=patient.email)",
        "test_8_staff",
    ),
    "M8b no rate limit": (
        "graph/mutations/set_credentials.py",
        'if not await ctx.services.limiter.allow("set_credentials", f"staff:{staff.id}"):',
        "if False:",
        "test_8_set",
    ),
    "S2 stress: login no re-check": (
        "onboarding/login.py",
        "    if fresh.password_hash != seen.password_hash or not _usable(fresh, settings, utcnow()):\n        return None\n",
        "",
        "test_one_patient",
    ),
    "S3 stress: set_password keeps sessions": (
        "onboarding/unit_of_work.py",
        "            await self.revoke_sessions([patient.id])\n            await self.notify(",
        "            await self.notify(",
        "test_one_patient",
    ),
    "M9 inactive keeps access": (
        "onboarding/patients.py",
        "            if patient.chart_status not in INVITABLE_CHART_STATUSES and patient.portal_enabled:",
        "            if False:",
        "test_9",
    ),
    "M10 bulk invitation planned on rows read before the lock": (
        "onboarding/invitations.py",
        '    await checkpoints.reached("invite.before_lock")\n    try:\n        async with patient_change(actor, wanted, practice_id=practice_id, bulk=True) as change:\n            # Planned on the charts as they are under the lock: an address changed a\n            # moment ago is the one the link goes to (never the previous one).\n            results, chosen = await plan(change.patients)\n',
        '    _, early = await resolve_patients(practice_id, raw_ids)\n    await checkpoints.reached("invite.before_lock")\n    try:\n        async with patient_change(actor, wanted, practice_id=practice_id, bulk=True) as change:\n            change.patients.update(early)\n            results, chosen = await plan(early)\n',
        "test_4_a_bulk_invitation",
    ),
    "R1 redemption: date of birth not asked again under the lock": (
        "onboarding/redemption.py",
        "                if (\n                    await _dob_required(link, fresh_account, settings)\n                    and date_of_birth != current.date_of_birth\n                ):\n                    return None, [await _dob_mismatch(change, actor, link_id, current, settings)]\n",
        "",
        "test_r1",
    ),
    "R2a redemption: password not judged again under the lock": (
        "onboarding/redemption.py",
        "                if weak := judged(fresh_account, current.email):\n                    return None, [weak]\n",
        "",
        "test_r2_a_redeemed",
    ),
    "R2b change_password: password not judged again under the lock": (
        "onboarding/login.py",
        "        if weak := judged(fresh.username, current_patient.email):\n            return ChangeResult(None, [weak])\n",
        "",
        "test_r2_a_changed",
    ),
    "R2c set_credentials: password not judged again under the lock": (
        "onboarding/credentials.py",
        "            if password is not None and (\n",
        "            if False and (\n",
        "test_r2_a_staff",
    ),
    "R3 bulk by filter: filter not applied again under the lock": (
        "onboarding/bulk.py",
        "    if request.filter is None:\n        return list(raw_ids)\n",
        "    if True:\n        return list(raw_ids)\n",
        "test_r3",
    ),
    "R4 idempotency: a key lost to another request answers empty": (
        "onboarding/bulk.py",
        "    if problem:\n        return BulkOutcome(problems=[problem])\n    if stored is None:\n        raise error\n",
        "    if stored is None:\n        return BulkOutcome()\n",
        "test_r4",
    ),
}
only = sys.argv[2:]
for name, m in muts.items():
    if only and not any(name.startswith(o) for o in only):
        continue
    f, old, new, k = m
    src = open(f).read()
    if old not in src:
        print(name, "PATTERN MISSING")
        continue
    mutated = src.replace(old, new, 1)
    if name.startswith("M4"):
        mutated = mutated.replace(
            "results, chosen = await plan(change.patients, ids)",
            "results, chosen = await plan(before, ids)",
        )
    open(f, "w").write(mutated)
    try:
        r = subprocess.run(
            [
                ".venv/bin/python",
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                "-x",
                "tests/concurrency",
                "-k",
                k,
            ],
            capture_output=True,
            text=True,
            env={
                **__import__("os").environ,
                **(
                    {"PORTAL_TEST_POSTGRES_URL": sys.argv[1]}
                    if len(sys.argv) > 1 and sys.argv[1]
                    else {}
                ),
            },
        )
        last = [
            ln
            for ln in r.stdout.splitlines()
            if "passed" in ln or "failed" in ln or "error" in ln.lower()
        ][-1:]
        print(name, "->", "FAILS (good)" if r.returncode else "PASSES (bad)", last)
    finally:
        open(f, "w").write(src)

"""`wa-cloud templates check|diff|push|pull`: templates as code from the command line.

`check` needs nothing but the files. The others reach a number's WABA with the number's own
token, so they open the database and the secret key: `DATABASE_URL` and `WA_SECRET_KEY` as the
service has them, or the local `wa-cloud dev` database and its generated key when
`DATABASE_URL` is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import Final

from wa_cloud.config import Settings
from wa_cloud.db.queries import Q
from wa_cloud.graph.errors import GraphError
from wa_cloud.outbox import template_sync
from wa_cloud.outbox.template_rules import check_paths
from wa_cloud.outbox.templates import save_templates
from wa_cloud.providers.cloud import cloud_provider
from wa_cloud.resources import open_resources

DEFAULT_DIR: Final = Path("templates_meta")


def check(paths: list[Path]) -> int:
    violations = check_paths(paths)
    for violation in violations:
        print(violation)
    checked = len(template_sync.load_readable(paths))
    if violations:
        print(f"{len(violations)} rule(s) broken", file=sys.stderr)
        return 1
    print(f"{checked} template(s) follow Meta's rules")
    return 0


async def sync(args: argparse.Namespace, settings: Settings) -> int:
    paths = [Path(p) for p in args.paths] or [DEFAULT_DIR]
    if args.action != "pull" and check(paths) != 0:
        return 1
    async with open_resources(settings, pool_size=2) as resources:
        async with resources.pool.acquire() as conn:
            number = await conn.fetchrow(Q.template_number, args.number)
        if number is None or number["provider"] != "cloud" or not number["waba_id"]:
            print(f"wa-cloud: no Cloud API number {args.number} is registered", file=sys.stderr)
            return 2
        account = cloud_provider(resources.graph, resources.box, dict(number))
        try:
            remote = await account.templates()
        except GraphError as exc:
            print(
                f"wa-cloud: Meta refused the template list ({exc.code}): {exc.message}",
                file=sys.stderr,
            )
            return 1
        if args.action == "pull":
            skipped: list[str] = []
            for path in template_sync.pull_files(remote, paths[0], skipped.append):
                print(f"wrote {path}")
            for reason in skipped:
                print(f"wa-cloud: skipped {reason}", file=sys.stderr)
            return 1 if skipped else 0
        changes = template_sync.plan(
            template_sync.load_readable(paths), remote, prune=getattr(args, "prune", False)
        )
        if args.action == "push":
            await template_sync.apply(account, changes)
            fresh = await account.templates()  # no connection held while Meta answers
            async with resources.pool.acquire() as conn:
                await save_templates(conn, str(number["waba_id"]), fresh)
        for change in changes:
            print(change)
        refused = [c for c in changes if c.result.startswith("refused")]
        return 1 if refused else 0


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return check([Path(p) for p in args.paths] or [DEFAULT_DIR])
    if not args.number:
        print("wa-cloud: --number <phone_number_id> is required", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    if not settings.database_url:
        # The local `wa-cloud dev` database, and the key its tokens were sealed with.
        from wa_cloud.db import embedded

        settings = settings.with_dev_secrets()
        settings = replace(settings, database_url=embedded.start(settings.data_dir))
    if not settings.secret_key:
        print("wa-cloud: WA_SECRET_KEY is needed to open the number's token", file=sys.stderr)
        return 2
    return asyncio.run(sync(args, settings))

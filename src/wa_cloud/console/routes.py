"""The console's routes, under /console/ (design.md, Console)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from wa_cloud.console import views
from wa_cloud.routing import resource

ROUTES: list[BaseRoute] = [
    Mount("/console/static", StaticFiles(packages=[("wa_cloud.console", "static")])),
    resource("/console/", GET=views.home),
    resource("/console/signin", GET=views.signin_form, POST=views.signin),
    resource("/console/signout", POST=views.signout),
    resource("/console/link/{token}", GET=views.link_form, POST=views.link_signin),
    resource("/console/live", GET=views.live),
]

"""The web console at /console/: the operator's admin pages and each business's inbox.

Server-rendered with jinja2 (templates/), one stylesheet and one small script (static/), live
over Server-Sent Events fed by PostgreSQL LISTEN/NOTIFY (live.py); sessions in session.py.
"""
